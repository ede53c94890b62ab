"""A tile's "new reply" badge: a reply that ended after the member last had the chat open. Each
member has their own; opening the chat page, or the page saying it is in front of them
(POST …/seen), clears it; a chat they never opened shows nothing."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chats.services import chat_mark_seen
from tests import factories
from tests.support.turns import run_turn

pytestmark = pytest.mark.django_db(transaction=True)


def _unread(client) -> dict[str, bool]:
    return {row["title"]: row["unread"] for row in client.get("/api/mothership/chats").json()}


def test_a_reply_that_ends_after_the_last_visit_is_new_until_the_chat_is_opened(api, client, user, workspace, turns_not_enqueued):
    opened, never = (
        factories.ChatFactory(workspace=workspace, title="opened"),
        factories.ChatFactory(workspace=workspace, title="never"),
    )
    chat_mark_seen(user=user, chat=opened)
    assert _unread(api) == {"opened": False, "never": False}
    run_turn(opened, "/echo hi")
    run_turn(never, "/echo hi")
    assert _unread(api) == {"opened": True, "never": False}  # never opened: nothing is "new"
    client.force_login(user)
    assert 'data-unread="true"' in client.get("/").content.decode()

    assert client.get(f"/chats/{opened.id}/").status_code == 200  # opening it
    assert _unread(api) == {"opened": False, "never": False}
    assert 'data-unread="true"' not in client.get("/").content.decode()
    assert api.get(f"/api/mothership/chats/{opened.id}").json()["unread"] is False


def test_each_member_has_their_own_and_the_page_says_when_it_is_seen(api, user, workspace, turns_not_enqueued):
    chat = factories.ChatFactory(workspace=workspace, title="shared")
    member = factories.MembershipFactory(workspace=workspace).user
    other = APIClient()
    other.force_authenticate(member)
    chat_mark_seen(user=user, chat=chat)
    chat_mark_seen(user=member, chat=chat)
    run_turn(chat, "/echo hi")
    assert _unread(api) == _unread(other) == {"shared": True}

    assert other.post(f"/api/mothership/chats/{chat.id}/seen").status_code == 204
    assert _unread(other) == {"shared": False} and _unread(api) == {"shared": True}


def test_seen_is_404_for_a_non_member_and_for_a_bad_id(api, workspace):
    chat = factories.ChatFactory(workspace=workspace)
    stranger = APIClient()
    stranger.force_authenticate(factories.UserFactory())
    assert stranger.post(f"/api/mothership/chats/{chat.id}/seen").status_code == 404
    assert api.post("/api/mothership/chats/not-a-uuid/seen").status_code == 404
