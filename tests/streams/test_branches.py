"""Branches and versions: the messages form a tree; an edit or a regenerate adds a sibling, and
the model, the warms and the pages see only the shown branch."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chats.models import Message
from chats.selectors import conversation_prefix, conversation_prefixes, conversation_size
from chats.services import chat_create, membership_add
from streams import locks
from streams.services import branch, stream_cancel, stream_run, stream_start
from tests.support.turns import run_turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def run_inline(turns_not_enqueued, settings):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 5
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0
    return turns_not_enqueued


def _url(chat, tail=""):
    return f"/api/mothership/chats/{chat.id}{tail}"


def _texts(detail):
    return [(m["role"], m["content"]) for m in detail["messages"]]


def _two_turns(chat):
    _, first, reply1 = run_turn(chat, "one")
    _, second, reply2 = run_turn(chat, "two")
    return first, reply1, second, reply2


def test_an_edit_makes_a_sibling_answers_it_and_shows_its_branch(api, chat):
    first, reply1, second, reply2 = _two_turns(chat)

    response = api.post(_url(chat, f"/messages/{second.user_message_id}/edit"), {"content": "two, better"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert stream_run(stream_id=body["stream_id"]) == "completed"

    edited = Message.objects.get(pk=body["user_message_id"])
    assert edited.parent_id == reply1.pk  # beside the old question, after the same reply
    detail = api.get(_url(chat)).json()
    assert [role for role, _ in _texts(detail)] == ["user", "assistant", "user", "assistant"]
    assert detail["messages"][2]["content"] == "two, better"
    assert detail["messages"][2]["sibling_ids"] == [str(second.user_message_id), body["user_message_id"]]
    assert detail["messages"][2]["parent_id"] == str(reply1.pk)
    assert detail["messages"][0]["sibling_ids"] == [str(first.user_message_id)]
    assert detail["leaf_id"] == body["message_id"]
    # The model saw the new branch only, and so do the next turn and the warms.
    expected = [m for m in _texts(detail)]
    assert [(m["role"], m["content"]) for m in conversation_prefix(chat_id=chat.pk)] == expected
    assert [(m["role"], m["content"]) for m in conversation_prefixes(chat_ids=[chat.pk])[chat.pk]] == expected
    assert conversation_size(chat_id=chat.pk) == (sum(len(text) for _, text in expected), 4)
    assert Message.objects.filter(chat=chat).count() == 6  # nothing was thrown away


def test_switching_back_shows_the_old_branch_and_the_next_turn_continues_it(api, chat):
    first, reply1, second, reply2 = _two_turns(chat)
    edit = api.post(_url(chat, f"/messages/{second.user_message_id}/edit"), {"content": "two, better"}, format="json").json()
    stream_run(stream_id=edit["stream_id"])

    # The old question's version: the branch through it, down to its newest reply, is shown.
    response = api.patch(_url(chat), {"leaf_id": str(second.user_message_id)}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["leaf_id"] == str(reply2.pk)
    assert [text for _, text in _texts(response.json())] == ["one", reply1.content, "two", reply2.content]

    status, third, _ = run_turn(chat, "three")
    assert status == "completed"
    assert Message.objects.get(pk=third.user_message_id).parent_id == reply2.pk
    sent = [m["content"] for m in conversation_prefix(chat_id=chat.pk, until=Message.objects.get(pk=third.user_message_id))]
    assert sent == ["one", reply1.content, "two", reply2.content, "three"]


def test_regenerate_keeps_the_old_reply_as_a_version(api, chat):
    _, first, reply = run_turn(chat, "one")

    response = api.post(_url(chat, f"/messages/{reply.pk}/regenerate"))
    assert response.status_code == 201
    new_id = response.json()["message_id"]
    stream_run(stream_id=response.json()["stream_id"])

    detail = api.get(_url(chat)).json()
    assert detail["messages"][1]["id"] == new_id
    assert detail["messages"][1]["sibling_ids"] == [str(reply.pk), new_id]
    one = api.get(_url(chat, f"/messages/{reply.pk}")).json()
    assert one["sibling_ids"] == [str(reply.pk), new_id] and one["content"] == reply.content
    # Back to the first version: it is the shown reply, and the one Regenerate then applies to.
    assert api.patch(_url(chat), {"leaf_id": str(reply.pk)}, format="json").json()["messages"][1]["id"] == str(reply.pk)
    assert api.post(_url(chat, f"/messages/{new_id}/regenerate")).status_code == 409  # not on the shown branch


def test_switching_branches_while_a_turn_streams_is_refused_and_changes_nothing(api, chat):
    _, first, reply = run_turn(chat, "one")
    again = api.post(_url(chat, f"/messages/{reply.pk}/regenerate")).json()  # queued: live

    response = api.patch(_url(chat), {"leaf_id": str(reply.pk)}, format="json")

    assert response.status_code == 409
    assert "streaming" in response.json()["detail"]
    chat.refresh_from_db()
    assert str(chat.leaf_id) == again["message_id"]
    stream_cancel(chat=chat, stream_id=again["stream_id"], reason="user")


def test_a_turn_that_started_between_the_read_and_the_switch_keeps_its_branch(api, chat, monkeypatch):
    """Compare-and-set: the switch read the leaf, then a turn moved it; the switch is refused."""
    _, first, reply = run_turn(chat, "one")
    real = branch.branch_leaf

    def start_a_turn_meanwhile(**kwargs):
        leaf = real(**kwargs)
        turn = stream_start(chat=chat, content="meanwhile")
        locks.lock_release(chat_id=chat.pk, stream_id=turn.stream.id)  # as if the lock check came first
        start_a_turn_meanwhile.turn = turn
        return leaf

    monkeypatch.setattr(branch, "branch_leaf", start_a_turn_meanwhile)
    response = api.patch(_url(chat), {"leaf_id": str(first.user_message_id)}, format="json")

    assert response.status_code == 409
    chat.refresh_from_db()
    assert chat.leaf_id == start_a_turn_meanwhile.turn.assistant_message.pk


def test_bad_branch_requests_get_a_clear_4xx(api, chat, workspace, make_user):
    _, first, reply = run_turn(chat, "one")
    other = chat_create(workspace=workspace, title="other")
    _, other_turn, _ = run_turn(other, "elsewhere")

    assert api.patch(_url(chat), {"leaf_id": str(other_turn.user_message_id)}, format="json").status_code == 400
    assert api.patch(_url(chat), {"leaf_id": "not-a-uuid"}, format="json").status_code == 400
    assert api.post(_url(chat, f"/messages/{reply.pk}/edit"), {"content": "x"}, format="json").status_code == 409  # a reply
    assert api.post(_url(chat, f"/messages/{first.user_message_id}/edit"), {"content": ""}, format="json").status_code == 400
    assert api.post(_url(chat, f"/messages/{first.user_message_id}/edit"), {}, format="json").status_code == 400
    # Another member may switch versions; a non-member gets 404 for all of it.
    member, stranger = make_user("bob"), make_user("mallory")
    membership_add(workspace=workspace, user=member)
    as_member, as_stranger = APIClient(), APIClient()
    as_member.force_authenticate(member)
    as_stranger.force_authenticate(stranger)
    assert as_member.patch(_url(chat), {"leaf_id": str(reply.pk)}, format="json").status_code == 200
    assert as_member.patch(_url(chat), {"pinned": True}, format="json").status_code == 403
    assert as_stranger.patch(_url(chat), {"leaf_id": str(reply.pk)}, format="json").status_code == 404
    assert (
        as_stranger.post(_url(chat, f"/messages/{first.user_message_id}/edit"), {"content": "x"}, format="json").status_code
        == 404
    )


def test_the_shown_branch_pages_back_to_its_first_message(api, chat):
    _, first, reply1 = run_turn(chat, "one")
    run_turn(chat, "two")
    edit = api.post(_url(chat, f"/messages/{first.user_message_id}/edit"), {"content": "uno"}, format="json").json()
    stream_run(stream_id=edit["stream_id"])
    run_turn(chat, "dos")

    page = api.get(_url(chat, "/messages"), {"limit": 3})
    assert [m["content"] for m in page.json()][0] != "uno"
    earlier = page.headers["Link"].split(";")[0].strip("<>")
    rest = api.get(earlier).json()
    assert [m["content"] for m in rest] == ["uno"]


def test_a_link_to_a_message_on_another_branch_opens_that_branch_unless_a_reply_streams(api, browser_client, chat):
    _, first, reply = run_turn(chat, "one")
    again = api.post(_url(chat, f"/messages/{reply.pk}/regenerate")).json()
    # While the new version streams, the link shows the chat as it is (the branch being written).
    page = browser_client.get(f"/chats/{chat.id}/?message={reply.pk}")
    assert page.status_code == 200 and f'data-message-id="{reply.pk}"' not in page.content.decode()
    stream_run(stream_id=again["stream_id"])

    page = browser_client.get(f"/chats/{chat.id}/?message={reply.pk}")  # a search result's link

    assert f'data-message-id="{reply.pk}"' in page.content.decode()
    chat.refresh_from_db()
    assert chat.leaf_id == reply.pk
    for odd in ("not-a-uuid", str(first.id)):  # not a message of the chat: the page opens as it is
        assert browser_client.get(f"/chats/{chat.id}/?message={odd}").status_code == 200
