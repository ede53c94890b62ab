"""Export (``GET …/chats/<id>/export?format=markdown|json``) and import (``POST
…/workspaces/<id>/import``: this app's JSON export or a ChatGPT ``conversations.json``)."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from chats.models import Chat, ChatImport, Membership, Message
from mothership.infra.throttles import user_rate_reset
from tests import factories

pytestmark = pytest.mark.django_db

CHATGPT_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "chatgpt_conversations.json"
T0 = datetime.datetime(2026, 3, 1, 9, 0, tzinfo=datetime.UTC)


def _say(chat, role, content, *, parent=None, minutes=0, **fields):
    message = factories.MessageFactory(chat=chat, role=role, content=content, parent=parent, **fields)
    # auto_now_add wrote "now": the conversation's own times, a minute apart.
    Message.objects.filter(pk=message.pk).update(created_at=T0 + datetime.timedelta(minutes=minutes))
    message.refresh_from_db()
    return message


@pytest.fixture
def branched(chat):
    """u1 → a1 → {u2 "old" → a2, u2' "edited" → a2' → u3 (shown)}; a regenerated a2' sibling too."""
    Chat.objects.filter(pk=chat.pk).update(system_prompt="Be terse.", model_id="local-terse")
    u1 = _say(chat, "user", "Plan a trip", minutes=0)
    a1 = _say(chat, "assistant", "Where to?", parent=u1, minutes=1, input_tokens=12, output_tokens=3)
    old = _say(chat, "user", "Lisbon, old question", parent=a1, minutes=2)
    _say(chat, "assistant", "Lisbon answer on the old branch", parent=old, minutes=3)
    edited = _say(chat, "user", "Porto, edited question", parent=a1, minutes=4)
    _say(chat, "assistant", "Porto answer, first try", parent=edited, minutes=5, status=Message.Status.CANCELLED)
    shown = _say(
        chat,
        "assistant",
        "Porto answer, regenerated",
        parent=edited,
        minutes=6,
        tool_calls=[{"callId": "c1", "tool": "demo.echo", "arguments": {"text": "x"}, "status": "ok", "content": "x"}],
    )
    Chat.objects.filter(pk=chat.pk).update(leaf_id=shown.pk)
    chat.refresh_from_db()
    return chat


def _upload(content, name="export.json"):
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    return SimpleUploadedFile(name, raw, content_type="application/json")


def _import(api, workspace, content, name="export.json"):
    return api.post(f"/api/mothership/workspaces/{workspace.id}/import", {"file": _upload(content, name)}, format="multipart")


def _chatgpt() -> list:
    return json.loads(CHATGPT_FIXTURE.read_text())


def _tree(chat) -> tuple[set, object]:
    """A chat's tree by content: {(role, content, parent's content)} and the leaf's content."""
    messages = {m.pk: m for m in Message.objects.filter(chat=chat)}
    edges = {(m.role, m.content, messages[m.parent_id].content if m.parent_id else None) for m in messages.values()}
    return edges, messages[chat.leaf_id].content if chat.leaf_id else None


# --- Export ------------------------------------------------------------------------------------


def test_markdown_export_is_the_shown_branch_with_role_headings_as_an_attachment(api, branched):
    Chat.objects.filter(pk=branched.pk).update(title='Q3 / trip: "draft"')

    answer = api.get(f"/api/mothership/chats/{branched.id}/export?format=markdown")

    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/markdown")
    assert answer["Content-Disposition"] == 'attachment; filename="Q3 - trip - draft.md"'
    text = answer.content.decode()
    assert text.startswith('# Q3 / trip: "draft"\n')
    assert "Be terse." in text  # the system prompt
    shown = ["Plan a trip", "Where to?", "Porto, edited question", "Porto answer, regenerated"]
    assert [text.index(part) for part in shown] == sorted(text.index(part) for part in shown)
    for other_branch in ("Lisbon, old question", "Lisbon answer on the old branch", "Porto answer, first try"):
        assert other_branch not in text
    assert text.count("## User") == 2 and text.count("## Assistant") == 2


def test_json_export_holds_every_message_of_every_branch_with_the_chat_fields(api, branched):
    answer = api.get(f"/api/mothership/chats/{branched.id}/export?format=json")

    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("application/json")
    assert answer["Content-Disposition"] == 'attachment; filename="First chat.json"'
    body = json.loads(answer.content)
    assert (body["format"], body["version"]) == ("mothership.chat", 1)
    assert (body["title"], body["system_prompt"], body["model_id"]) == ("First chat", "Be terse.", "local-terse")
    messages = Message.objects.filter(chat=branched)
    assert body["leaf_id"] == str(branched.leaf_id)
    assert len(body["messages"]) == messages.count() == 7
    by_id = {m["id"]: m for m in body["messages"]}
    for message in messages:
        row = by_id[str(message.pk)]
        assert row["parent_id"] == (str(message.parent_id) if message.parent_id else None)
        assert (row["role"], row["content"], row["status"]) == (message.role, message.content, message.status)
        assert row["tool_calls"] == message.tool_calls and row["usage"] == message.usage
        assert datetime.datetime.fromisoformat(row["created_at"]) == message.created_at
    assert set(body["messages"][0]) == {
        *("id", "parent_id", "role", "content", "status", "created_at", "tool_calls", "usage", "attachments")
    }
    assert all(m["attachments"] == [] for m in body["messages"])  # none attached in this chat


def test_a_chat_with_no_leaf_set_exports_its_newest_message_as_the_leaf(api, chat):
    first = _say(chat, "user", "one", minutes=0)
    newest = _say(chat, "assistant", "two", parent=first, minutes=1)

    body = api.get(f"/api/mothership/chats/{chat.id}/export?format=json").json()
    text = api.get(f"/api/mothership/chats/{chat.id}/export?format=markdown").content.decode()

    assert body["leaf_id"] == str(newest.pk)
    assert "one" in text and "two" in text


def test_messages_saved_without_a_parent_read_as_one_branch_in_order(api, chat):
    # Turns saved before the chat kept parents (no parent after the first) are one branch, as 0013 reads them.
    for minutes, (role, content) in enumerate([("user", "first"), ("assistant", "second"), ("user", "third")]):
        _say(chat, role, content, minutes=minutes)

    text = api.get(f"/api/mothership/chats/{chat.id}/export?format=markdown").content.decode()
    body = api.get(f"/api/mothership/chats/{chat.id}/export?format=json").json()

    assert text.index("first") < text.index("second") < text.index("third")
    assert [m["parent_id"] is None for m in body["messages"]] == [True, False, False]


def test_a_title_with_no_safe_character_is_named_chat_and_a_unicode_one_keeps_its_letters(api, chat):
    Chat.objects.filter(pk=chat.pk).update(title="///")
    assert api.get(f"/api/mothership/chats/{chat.id}/export?format=json")["Content-Disposition"] == (
        'attachment; filename="chat.json"'
    )
    Chat.objects.filter(pk=chat.pk).update(title="Café\r\nnotes")
    disposition = api.get(f"/api/mothership/chats/{chat.id}/export?format=json")["Content-Disposition"]
    assert disposition == "attachment; filename*=utf-8''Caf%C3%A9%20notes.json"


def test_export_is_for_members_only_and_a_trashed_chat_is_not_found(api, chat, make_user):
    stranger = APIClient()
    stranger.force_authenticate(make_user())
    colleague = APIClient()
    colleague.force_authenticate(factories.MembershipFactory(workspace=chat.workspace, role=Membership.Role.MEMBER).user)

    assert stranger.get(f"/api/mothership/chats/{chat.id}/export?format=json").status_code == 404
    assert colleague.get(f"/api/mothership/chats/{chat.id}/export?format=json").status_code == 200
    assert api.get("/api/mothership/chats/not-a-uuid/export?format=json").status_code == 404

    Chat.objects.filter(pk=chat.pk).update(deleted_at=timezone.now())
    assert api.get(f"/api/mothership/chats/{chat.id}/export?format=json").status_code == 404
    assert api.get(f"/api/mothership/chats/{chat.id}/export?format=markdown").status_code == 404


@pytest.mark.parametrize("query", ["?format=pdf", "?format=", "", "?format=JSON"])
def test_a_format_other_than_markdown_or_json_is_a_400_naming_both(api, chat, query):
    answer = api.get(f"/api/mothership/chats/{chat.id}/export{query}")

    assert answer.status_code == 400
    assert "markdown" in answer.json()["detail"] and "json" in answer.json()["detail"]


# --- Import: this app's JSON --------------------------------------------------------------------


def test_a_json_export_imported_gives_the_same_tree_leaf_and_settings(api, branched, user, make_user):
    exported = json.loads(api.get(f"/api/mothership/chats/{branched.id}/export?format=json").content)
    elsewhere = factories.MembershipFactory(user=user, workspace__name="Elsewhere").workspace

    answer = _import(api, elsewhere, exported, name="First chat.json")

    assert answer.status_code == 201, answer.content
    [chat_id] = answer.json()["chats"]
    copy_ = Chat.objects.get(pk=chat_id)
    assert copy_.workspace == elsewhere and copy_.pk != branched.pk
    assert (copy_.title, copy_.title_set, copy_.system_prompt, copy_.model_id) == ("First chat", True, "Be terse.", "local-terse")
    assert copy_.created_by == user
    assert _tree(copy_) == _tree(branched)
    assert copy_.leaf_id not in set(Message.objects.filter(chat=branched).values_list("pk", flat=True))
    imported = Message.objects.filter(chat=copy_)
    assert {m.status for m in imported} == {Message.Status.COMPLETE} and not any(m.stream_id for m in imported)
    originals = {m.content: m for m in Message.objects.filter(chat=branched)}
    for message in imported:
        assert message.created_at == originals[message.content].created_at
        assert message.usage == originals[message.content].usage
        assert message.tool_calls == originals[message.content].tool_calls
    assert (copy_.created_at, copy_.updated_at) == (branched.created_at, branched.updated_at)
    # and it exports again as the same conversation
    again = json.loads(api.get(f"/api/mothership/chats/{chat_id}/export?format=json").content)
    assert again["leaf_id"] == str(copy_.leaf_id) and len(again["messages"]) == 7
    record = ChatImport.objects.get()
    assert (record.workspace, record.user, record.source, record.filename) == (elsewhere, user, "mothership", "First chat.json")
    assert record.chat_ids == [chat_id] and record.message_count == 7 and record.size > 0


def test_importing_the_same_export_twice_makes_two_chats(api, branched, workspace):
    exported = json.loads(api.get(f"/api/mothership/chats/{branched.id}/export?format=json").content)

    first, second = _import(api, workspace, exported), _import(api, workspace, exported)

    assert first.status_code == second.status_code == 201
    assert Chat.objects.filter(workspace=workspace).count() == 3
    assert Message.objects.count() == 21


# --- Import: ChatGPT -----------------------------------------------------------------------------


def test_a_chatgpt_export_becomes_one_chat_per_conversation_with_its_branches(api, workspace, user):
    answer = _import(api, workspace, _chatgpt(), name="conversations.json")

    assert answer.status_code == 201, answer.content
    lisbon, recursion = (Chat.objects.get(pk=pk) for pk in answer.json()["chats"])

    # the first: hidden system and context nodes, the browsing tool call and its result skipped
    edges, leaf = _tree(lisbon)
    assert edges == {
        ("user", "Plan a weekend in Lisbon.", None),
        ("assistant", "Day 1: Alfama and the castle.\nDay 2: Belém.", "Plan a weekend in Lisbon."),
        ("user", "What about food?", "Day 1: Alfama and the castle.\nDay 2: Belém."),  # the edited question's
        ("assistant", "Try pastéis de nata.", "What about food?"),  # first version, kept as a branch
        ("user", "What about museums?", "Day 1: Alfama and the castle.\nDay 2: Belém."),
        ("assistant", "Visit the Gulbenkian.", "What about museums?"),  # parent: the nearest imported ancestor
        ("user", "And this tower?", "Visit the Gulbenkian."),  # its image part skipped
        ("assistant", "That is the Belém Tower.", "And this tower?"),
    }
    assert leaf == "That is the Belém Tower."  # current_node
    assert (lisbon.title, lisbon.title_set, lisbon.created_by) == ("Weekend in Lisbon", True, user)
    first = Message.objects.get(chat=lisbon, content="Plan a weekend in Lisbon.")
    assert first.created_at == datetime.datetime.fromtimestamp(1700000010.0, tz=datetime.UTC)
    assert lisbon.created_at == datetime.datetime.fromtimestamp(1700000000.25, tz=datetime.UTC)
    assert lisbon.updated_at == datetime.datetime.fromtimestamp(1700000900.5, tz=datetime.UTC)
    assert {m.status for m in Message.objects.filter(chat__workspace=workspace)} == {"complete"}

    # the second: untitled, so named by its first message; a regenerated reply kept as a sibling;
    # current_node (an empty placeholder) mapped to its nearest imported ancestor
    edges, leaf = _tree(recursion)
    assert edges == {
        ("user", "Explain recursion in one line.\nThanks!", None),
        ("assistant", "A function that calls itself.", "Explain recursion in one line.\nThanks!"),
        ("assistant", "See: recursion.", "Explain recursion in one line.\nThanks!"),
    }
    assert leaf == "See: recursion."
    assert recursion.title == "Explain recursion in one line."

    record = ChatImport.objects.get()
    assert (record.source, record.filename, record.message_count) == ("chatgpt", "conversations.json", 11)
    assert record.chat_ids == answer.json()["chats"]
    notes = " ".join(record.notes)
    assert "image_asset_pointer" in notes and "code" in notes and "Weekend in Lisbon" in notes
    assert answer.json()["notes"] == record.notes


def test_the_imported_chatgpt_branch_exports_as_markdown_along_current_node(api, workspace):
    [lisbon_id, _] = _import(api, workspace, _chatgpt()).json()["chats"]

    text = api.get(f"/api/mothership/chats/{lisbon_id}/export?format=markdown").content.decode()

    assert "What about museums?" in text and "That is the Belém Tower." in text
    assert "What about food?" not in text


# --- Refusals: nothing written -------------------------------------------------------------------


def _counts():
    return Chat.objects.count(), Message.objects.count(), ChatImport.objects.count()


def _broken(mutate):
    data = _chatgpt()
    mutate(data)
    return data


def _cycle(data):
    data[0]["mapping"]["u1"]["parent"] = "a3"


def _missing_parent(data):
    data[0]["mapping"]["a1"]["parent"] = "no-such-node"


def _second_broken(data):
    data[1]["mapping"]["r1"]["message"]["content"]["parts"] = "not a list"


def _own_export_cycle(data):
    data["messages"][0]["parent_id"] = data["messages"][-1]["id"]


BAD_FILES = [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b'{"format": "mothership.chat",\n  "title": }', "line 2 column 12", id="not-json"),
    pytest.param(b"\xff\xfe\x00garbage", "UTF-8", id="not-utf8"),
    pytest.param({"hello": "world"}, "ChatGPT", id="unknown-format-object"),
    pytest.param(42, "ChatGPT", id="unknown-format-number"),
    pytest.param([], "no conversation", id="empty-list"),
    pytest.param(["x"], "conversations[0]: not an object", id="list-of-strings"),
    pytest.param(_broken(lambda d: d[0].pop("mapping")), "conversations[0].mapping: missing", id="no-mapping"),
    pytest.param(_broken(_cycle), "conversations[0].mapping.u1.parent: a cycle", id="cycle"),
    pytest.param(_broken(_missing_parent), "conversations[0].mapping.a1.parent: not a node id", id="missing-parent"),
    pytest.param(_broken(lambda d: d[0].update(current_node="gone")), "conversations[0].current_node: not a node id", id="leaf"),
    pytest.param(
        _broken(lambda d: d[0]["mapping"]["u1"]["message"].update(create_time="yesterday")),
        "conversations[0].mapping.u1.message.create_time: not a time",
        id="bad-time",
    ),
    pytest.param(_broken(_second_broken), "conversations[1].mapping.r1.message.content.parts: not a list", id="second-broken"),
    pytest.param({"format": "mothership.chat", "version": 9}, "version", id="own-future-version"),
    pytest.param(
        {"format": "mothership.chat", "version": 1, "title": "t", "messages": [{"id": "m1"}]},
        "messages[0].parent_id: missing",
        id="own-wrong-shape",
    ),
]


@pytest.mark.parametrize(("content", "named"), BAD_FILES)
def test_a_bad_file_is_a_400_naming_what_is_wrong_and_nothing_is_imported(api, workspace, chat, content, named):
    factories.MessageFactory(chat=chat)
    before = _counts()

    answer = _import(api, workspace, content)

    assert answer.status_code == 400, answer.content
    assert named in answer.json()["detail"]
    assert _counts() == before


def test_a_cycle_in_this_apps_export_is_a_400_and_nothing_is_imported(api, branched, workspace):
    exported = json.loads(api.get(f"/api/mothership/chats/{branched.id}/export?format=json").content)
    for broken, named in (
        (_own_export_cycle, "cycle"),
        (lambda d: d["messages"][3].update(parent_id="not-here"), "messages[3].parent_id: not the id of a message"),
        (lambda d: d.update(leaf_id="not-here"), "leaf_id: not the id of a message"),
        (lambda d: d["messages"][1].update(role="system"), "messages[1].role"),
        (lambda d: d["messages"][2].update(created_at="soon"), "messages[2].created_at"),
    ):
        data = copy.deepcopy(exported)
        broken(data)
        before = _counts()

        answer = _import(api, workspace, data)

        assert answer.status_code == 400 and named in answer.json()["detail"], answer.content
        assert _counts() == before


def test_a_failure_half_way_through_the_writes_leaves_nothing(api, workspace, monkeypatch):
    from chats.imports import service

    real = service._conversation_write
    calls = []

    def second_fails(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the database went away half-way")
        return real(**kwargs)

    monkeypatch.setattr(service, "_conversation_write", second_fails)
    before = _counts()

    with pytest.raises(RuntimeError):
        _import(api, workspace, _chatgpt())

    assert len(calls) == 2 and _counts() == before


def test_a_file_over_the_limit_is_a_413_naming_it(api, workspace, settings):
    settings.MOTHERSHIP_IMPORT_MAX_BYTES = 1000
    before = _counts()

    answer = _import(api, workspace, _chatgpt())

    assert answer.status_code == 413
    assert "1000 bytes" in answer.json()["detail"]
    assert _counts() == before


def test_imports_are_rate_limited_429_with_retry_after_and_nothing_is_imported(api, user, workspace, settings):
    settings.MOTHERSHIP_IMPORT_RATE = "2/hour"
    user_rate_reset(scope="import", user=user)
    try:
        assert [_import(api, workspace, _chatgpt()).status_code for _ in range(2)] == [201, 201]
        before = _counts()

        refused = _import(api, workspace, _chatgpt())

        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        assert refused.json()["detail"].startswith("Too many imports.")
        assert _counts() == before
    finally:
        user_rate_reset(scope="import", user=user)


def test_import_is_for_members_only_and_needs_a_file(api, workspace, make_user):
    stranger = APIClient()
    stranger.force_authenticate(make_user())

    assert _import(stranger, workspace, _chatgpt()).status_code == 404
    assert api.post("/api/mothership/workspaces/not-a-uuid/import", {"file": _upload(_chatgpt())}).status_code == 404
    missing = api.post(f"/api/mothership/workspaces/{workspace.id}/import", {}, format="multipart")
    assert missing.status_code == 400 and "file" in missing.json()["detail"]
    assert not Chat.objects.exists()


# --- Admin ---------------------------------------------------------------------------------------


def test_imports_are_listed_read_only_in_the_admin(api, workspace, make_user, client):
    _import(api, workspace, _chatgpt(), name="conversations.json")
    record = ChatImport.objects.get()
    admin = make_user("root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client.force_login(admin)

    listing = client.get("/admin/chats/chatimport/")
    detail = client.get(f"/admin/chats/chatimport/{record.pk}/change/")

    assert listing.status_code == 200 and "conversations.json" in listing.content.decode()
    assert detail.status_code == 200 and "image_asset_pointer" in detail.content.decode()
    assert client.get("/admin/chats/chatimport/add/").status_code == 403
    assert 'name="_save"' not in detail.content.decode()
