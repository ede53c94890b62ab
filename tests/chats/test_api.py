from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from chats import services as chat_services
from chats.models import Chat, Message
from streams import locks
from streams.models import Stream
from streams.services import stream_start

pytestmark = pytest.mark.django_db


def test_token_login_returns_a_token_that_authenticates(user):
    client = APIClient()
    response = client.post("/api/auth/token", {"username": "alice", "password": "pw-123456"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/mothership/workspaces").status_code == 200


def test_token_login_with_wrong_password_is_a_400_with_a_message(user):
    response = APIClient().post("/api/auth/token", {"username": "alice", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert "Unable to log in" in response.json()["detail"]


def test_anonymous_api_calls_are_refused_with_a_message_and_a_bad_token_is_named(chat):
    anonymous = APIClient()
    for method, path in (
        ("get", "/api/mothership/workspaces"),
        ("get", "/api/mothership/chats"),
        ("get", f"/api/mothership/chats/{chat.id}"),
        ("post", f"/api/mothership/chats/{chat.id}/messages"),
    ):
        answer = getattr(anonymous, method)(path, {"content": "hi"} if method == "post" else None, format="json")
        # Session authentication comes first, so DRF answers 403 (not 401) to a caller with no credentials.
        assert (answer.status_code, answer.json()) == (403, {"detail": "Authentication credentials were not provided."}), path
    forged = APIClient(HTTP_AUTHORIZATION="Token not-a-token").get("/api/mothership/workspaces")
    assert (forged.status_code, forged.json()) == (403, {"detail": "Invalid token."})
    assert not Message.objects.filter(chat=chat).exists()


def test_workspaces_lists_only_the_callers(api, workspace, make_user):
    chat_services.workspace_create(name="Other", owner=make_user())
    assert api.get("/api/mothership/workspaces").json() == [{"id": str(workspace.id), "name": "Acme"}]


def test_create_chat_returns_the_chat_contract(api, workspace):
    response = api.post("/api/mothership/chats", {"workspace": str(workspace.id), "title": "  Plans  "}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "Plans"
    assert body["active_stream_id"] is None
    assert body["liveness"] == "verified"
    assert body["state"] == "idle"
    assert {"id", "updated_at", "workspace"} <= body.keys()


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({}, "workspace"),
        ({"workspace": "not-a-uuid", "title": "x"}, "workspace"),
        ({"workspace": None, "title": ""}, "workspace"),
    ],
)
def test_create_chat_bad_input_is_a_400_with_a_message(api, workspace, payload, fragment):
    response = api.post("/api/mothership/chats", payload, format="json")
    assert response.status_code == 400
    assert fragment in response.json()["detail"]


def test_create_chat_in_someone_elses_workspace_is_404(api, make_user):
    other = chat_services.workspace_create(name="Other", owner=make_user())
    response = api.post("/api/mothership/chats", {"workspace": str(other.id), "title": "x"}, format="json")
    assert response.status_code == 404
    assert Chat.objects.count() == 0


def test_malformed_json_is_a_400(api):
    response = api.generic("POST", "/api/mothership/chats", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"]


def test_list_is_scoped_to_the_workspace_and_membership(api, workspace, chat, make_user):
    outsider_ws = chat_services.workspace_create(name="Other", owner=make_user())
    chat_services.chat_create(workspace=outsider_ws, title="secret")
    ids = [c["id"] for c in api.get(f"/api/mothership/chats?workspace={workspace.id}").json()]
    assert ids == [str(chat.id)]
    assert [c["id"] for c in api.get("/api/mothership/chats").json()] == [str(chat.id)]
    assert api.get(f"/api/mothership/chats?workspace={outsider_ws.id}").status_code == 404
    assert api.get("/api/mothership/chats?workspace=zzz").status_code == 400


def test_detail_of_a_chat_is_404_for_non_members_and_unknown_ids(chat, make_user):
    stranger = APIClient()
    stranger.force_authenticate(make_user())
    assert stranger.get(f"/api/mothership/chats/{chat.id}").status_code == 404
    assert stranger.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "hi"}, format="json").status_code == 404
    assert stranger.get(f"/api/mothership/chats/{uuid.uuid4()}").status_code == 404
    assert stranger.get("/api/mothership/chats/not-a-uuid").status_code == 404
    assert Message.objects.count() == 0


def test_send_creates_turn_marker_and_lock_then_a_second_send_is_409(api, chat):
    response = api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "hello"}, format="json")
    assert response.status_code == 201
    body = response.json()
    stream = Stream.objects.get(pk=body["stream_id"])
    assert stream.status == "queued"
    assert str(stream.assistant_message_id) == body["message_id"]
    assert set(Message.objects.filter(chat=chat).values_list("stream_id", flat=True)) == {stream.id}
    chat.refresh_from_db()
    assert chat.active_stream_id == stream.id
    assert locks.lock_owner(chat_id=chat.id) == str(stream.id)

    second = api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "again"}, format="json")
    assert second.status_code == 409
    assert "already streaming" in second.json()["detail"]
    assert Message.objects.filter(chat=chat, role="user").count() == 1

    detail = api.get(f"/api/mothership/chats/{chat.id}").json()
    assert detail["state"] == "streaming"
    assert detail["active_stream_id"] == body["stream_id"]
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["stream"]["id"] == body["stream_id"]
    assert detail["stream"]["status"] == "queued"
    locks.lock_release(chat_id=chat.id, stream_id=stream.id)


def test_a_send_makes_eight_statements_seven_on_sqlite_and_reads_nothing_for_tiles_nobody_watches(
    api, chat, django_capture_on_commit_callbacks
):
    """A burst of sends is bound by this cost: the membership, the workspace's budget (none here; read
    once, then from Redis, so a burst's later sends skip it), the shown branch's leaf (read before
    the transaction), the marker, the sender's row lock and their turns at once, the two messages (they name their stream before it exists), the
    stream. The tile push after commit knows the workspace and finds no dashboard listening."""
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True) as hooks:
        response = api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "hello"}, format="json")
    assert response.status_code == 201
    assert len(hooks) == 2  # the task is enqueued and the tile pushed
    statements = [q["sql"].split(None, 1)[0].upper() for q in queries.captured_queries]
    row_lock = ["SELECT"] if connection.vendor != "sqlite" else []  # SQLite's transaction holds the whole database
    assert [s for s in statements if s in ("SELECT", "INSERT", "UPDATE", "DELETE")] == [
        "SELECT",  # the membership
        "SELECT",  # the workspace's budget
        "SELECT",  # the last message of the chat's shown branch (before the transaction)
        "UPDATE",  # the marker and the new leaf (compare-and-set)
        *row_lock,  # the sender's row lock (PostgreSQL)
        "SELECT",  # their turns running
        "INSERT",  # the two messages
        "INSERT",  # the stream
    ]
    locks.lock_release(chat_id=chat.id, stream_id=response.json()["stream_id"])


def test_a_chat_deleted_after_the_membership_check_starts_nothing_and_frees_its_lock(chat):
    stale = Chat.objects.get(pk=chat.pk)
    Chat.objects.filter(pk=chat.pk).delete()
    with pytest.raises(Chat.DoesNotExist):
        stream_start(chat=stale, content="hello")
    assert locks.lock_owner(chat_id=chat.pk) is None
    assert Stream.objects.count() == 0
    assert Message.objects.count() == 0


@pytest.mark.parametrize("payload", [{}, {"content": ""}, {"content": "   "}, {"content": 12}, {"content": None}])
def test_send_bad_content_is_400_and_creates_nothing(api, chat, payload):
    response = api.post(f"/api/mothership/chats/{chat.id}/messages", payload, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("content")
    assert Stream.objects.count() == 0
    assert locks.lock_owner(chat_id=chat.id) is None


def test_openapi_schema_is_served(api):
    response = api.get("/api/schema")
    assert response.status_code == 200
    assert b"/api/mothership/chats/{chat_id}/messages" in response.content
