"""The authorization matrix: every endpoint and every socket message type, as anonymous, a
non-member, a member in a chat they created and in another's, an owner and staff (who is no
member: staff sees the admin, not other people's chats); CSRF on session writes; the socket's
Origin; a member removed while subscribed.

Rules (README, "Roles"): non-members get 404 (never 403, which would confirm the chat exists);
members read and chat; a turn is stopped (Stop, "stop and send") by its sender, the chat's creator
or an owner; closing and warming changes are for the chat's creator and the workspace's owners
(403 for other members, ``forbidden`` on the socket).
"""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from rest_framework.test import APIClient

from chats.models import Membership, Message
from mothership.consumers import MothershipConsumer
from streams import locks
from streams.models import Stream
from streams.providers import default_model
from streams.selectors import STOP_REFUSED
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

ACTORS = ("anonymous", "stranger", "creator", "member", "owner", "staff")


@pytest.fixture
def world(workspace, user, turns_not_enqueued, monkeypatch):
    """alice owns the workspace; bob created the chat; carol is another member; dave belongs to
    another workspace; erin is staff and a member of nothing. A warm asked for stays queued: a
    worker's result, pushed to whoever is subscribed then, would arrive as another frame's answer."""
    from warming.tasks import warm_batch

    monkeypatch.setattr(warm_batch, "apply_async", lambda *args, **kwargs: None)
    people = {
        "owner": user,
        "creator": factories.MembershipFactory(workspace=workspace, user__username="bob", role=Membership.Role.MEMBER).user,
        "member": factories.MembershipFactory(workspace=workspace, user__username="carol", role=Membership.Role.MEMBER).user,
        "stranger": factories.MembershipFactory(user__username="dave").user,
        "staff": factories.UserFactory(username="erin", is_staff=True, is_superuser=True),
        "anonymous": None,
    }
    chat = factories.ChatFactory(workspace=workspace, created_by=people["creator"], title="bob's")
    return people, workspace, chat


def _api(person) -> APIClient:
    client = APIClient()
    if person is not None:
        client.force_authenticate(person)
    return client


# endpoint → the status each actor gets. A new chat per send (one turn at a time per chat).
API = {
    ("get", "/api/mothership/workspaces"): dict(anonymous=403, stranger=200, creator=200, member=200, owner=200, staff=200),
    ("get", "/api/mothership/chats?workspace={ws}"): dict(
        anonymous=403, stranger=404, creator=200, member=200, owner=200, staff=404
    ),
    ("post", "/api/mothership/chats"): dict(anonymous=403, stranger=404, creator=201, member=201, owner=201, staff=404),
    ("get", "/api/mothership/models"): dict(anonymous=403, stranger=200, creator=200, member=200, owner=200, staff=200),
    ("get", "/api/mothership/chats/{chat}"): dict(anonymous=403, stranger=404, creator=200, member=200, owner=200, staff=404),
    ("patch", "/api/mothership/chats/{chat}"): dict(anonymous=403, stranger=404, creator=200, member=403, owner=200, staff=404),
    ("get", "/api/mothership/chats/{chat}/messages"): dict(
        anonymous=403, stranger=404, creator=200, member=200, owner=200, staff=404
    ),
    ("post", "/api/mothership/chats/{fresh}/messages"): dict(
        anonymous=403, stranger=404, creator=201, member=201, owner=201, staff=404
    ),
    ("post", "/api/mothership/chats/{chat}/cancel"): dict(
        anonymous=403, stranger=404, creator=200, member=200, owner=200, staff=404
    ),
    ("get", "/api/mothership/chats/{chat}/warming"): dict(
        anonymous=403, stranger=404, creator=200, member=200, owner=200, staff=404
    ),
    ("put", "/api/mothership/chats/{chat}/warming"): dict(
        anonymous=403, stranger=404, creator=200, member=403, owner=200, staff=404
    ),
    ("post", "/api/mothership/chats/{chat}/close"): dict(
        anonymous=403, stranger=404, creator=200, member=403, owner=200, staff=404
    ),
    ("delete", "/api/mothership/chats/{fresh}"): dict(anonymous=403, stranger=404, creator=204, member=403, owner=204, staff=404),
    ("get", "/api/mothership/workspaces/{ws}/members"): dict(
        anonymous=403, stranger=404, creator=200, member=200, owner=200, staff=404
    ),
    ("post", "/api/mothership/workspaces/{ws}/members"): dict(
        anonymous=403, stranger=404, creator=403, member=403, owner=201, staff=404
    ),
    ("post", "/api/auth/ws-ticket"): dict(anonymous=403, stranger=200, creator=200, member=200, owner=200, staff=200),
    # The schema is public, as the API's shape is no secret (the README documents it).
    ("get", "/api/schema"): dict(anonymous=200, stranger=200, creator=200, member=200, owner=200, staff=200),
}

BODIES = {
    "/api/mothership/chats": lambda ws: {"workspace": str(ws.id), "title": "new"},
    "/messages": lambda ws: {"content": "hello"},
    "/cancel": lambda ws: {"stream_id": str(uuid.uuid4())},
    "/warming": lambda ws: {"enabled": True},
    "/members": lambda ws: {"user": factories.UserFactory().username},  # someone new for each actor
}


def _body(path: str, workspace):
    for suffix, body in BODIES.items():
        if path.endswith(suffix):
            return body(workspace)
    return None


def test_every_endpoint_as_every_actor(world):
    people, workspace, chat = world
    got, expected = {}, {}
    for (method, template), statuses in API.items():
        for actor in ACTORS:
            fresh = factories.ChatFactory(workspace=workspace, created_by=people["creator"])
            path = template.format(ws=workspace.id, chat=chat.id, fresh=fresh.id)
            body = {"model": default_model().id} if method == "patch" else _body(path.split("?")[0], workspace)
            call = getattr(_api(people[actor]), method)
            answer = call(path, body, format="json") if body else call(path)
            got[(method, template, actor)] = answer.status_code
            expected[(method, template, actor)] = statuses[actor]
            if answer.status_code >= 400 and answer.get("Content-Type", "").startswith("application/json"):
                assert answer.json().get("detail"), (method, path, actor, answer.content)  # always a sentence
            if answer.status_code == 201 and "stream_id" in answer.json():
                locks.lock_release(chat_id=fresh.id, stream_id=answer.json()["stream_id"])
    wrong = {key: (got[key], want) for key, want in expected.items() if got[key] != want}
    assert not wrong, wrong


def test_a_token_revoke_is_the_callers_own(world):
    people, _workspace, _chat = world
    assert _api(None).delete("/api/auth/token").status_code == 403
    for actor in ("stranger", "member"):
        assert _api(people[actor]).delete("/api/auth/token").status_code == 204


PAGES = {
    "/": dict(anonymous=302, stranger=200, creator=200, member=200, owner=200, staff=200),
    "/chats/{chat}/": dict(anonymous=302, stranger=404, creator=200, member=200, owner=200, staff=404),
    "/settings/": dict(anonymous=302, stranger=200, creator=200, member=200, owner=200, staff=200),
    "/workspaces/{ws}/": dict(anonymous=302, stranger=404, creator=200, member=200, owner=200, staff=404),
    "/admin/": dict(anonymous=302, stranger=302, creator=302, member=302, owner=302, staff=200),
    "/admin/chats/chat/": dict(anonymous=302, stranger=302, creator=302, member=302, owner=302, staff=200),
}


def test_every_page_as_every_actor(world, client):
    people, workspace, chat = world
    wrong = {}
    for template, statuses in PAGES.items():
        for actor in ACTORS:
            client.logout()
            if people[actor] is not None:
                client.force_login(people[actor])
            status = client.get(template.format(chat=chat.id, ws=workspace.id)).status_code
            if status != statuses[actor]:
                wrong[(template, actor)] = (status, statuses[actor])
    assert not wrong, wrong


def test_session_writes_need_the_csrf_token(world):
    """Every write a browser session can make is refused without the CSRF token (the API's token
    authentication needs none: a cross-site page cannot send the Authorization header)."""
    from django.test import Client

    people, workspace, chat = world
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(people["owner"])
    writes = [
        ("post", "/api/mothership/chats", {"workspace": str(workspace.id), "title": "x"}),
        ("post", f"/api/mothership/chats/{chat.id}/messages", {"content": "x"}),
        ("post", f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": str(uuid.uuid4())}),
        ("post", f"/api/mothership/chats/{chat.id}/close", None),
        ("put", f"/api/mothership/chats/{chat.id}/warming", {"enabled": True}),
        ("post", "/api/auth/ws-ticket", None),
        ("delete", "/api/auth/token", None),
        ("post", "/chats/new", {"workspace": str(workspace.id), "title": "x"}),
        ("post", "/accounts/logout/", None),
    ]
    for method, path, body in writes:
        kwargs = {"data": body, "content_type": "application/json"} if body and path.startswith("/api/") else {"data": body or {}}
        answer = getattr(browser, method)(path, **kwargs)
        assert answer.status_code == 403, (method, path, answer.status_code)
        assert "CSRF" in answer.content.decode(), (method, path)


# --- the socket -------------------------------------------------------------------------


def _frames(chat, workspace) -> dict[str, dict]:
    c, w = str(chat.id), str(workspace.id)
    surface = {"surfaceId": "cache-warming", "conversationId": c}
    return {
        "subscribe conversation": {"type": "subscribe", "conversationId": c},
        "subscribe workspace": {"type": "subscribe", "workspaceId": w},
        "unsubscribe": {"type": "unsubscribe", "conversationId": c},
        "stream.resume": {"type": "stream.resume", "conversationId": c, "streamId": str(uuid.uuid4()), "afterSeq": 0},
        "surface subscribe": {"type": "subscribe", **surface},
        "surface unsubscribe": {"type": "unsubscribe", **surface},
        "set-enabled": {"type": "invoke", **surface, "action": "set-enabled", "payload": False},
        "set-interval": {"type": "invoke", **surface, "action": "set-interval", "payload": 120},
        "toggle": {"type": "invoke", **surface, "action": "toggle", "payload": False},
        "warm-now": {"type": "invoke", **surface, "action": "warm-now"},
        "ping": {"type": "ping"},
    }


MEMBER_OK = {
    "subscribe conversation": "subscribed",
    "subscribe workspace": "subscribed",
    "unsubscribe": "unsubscribed",
    "stream.resume": "not_found",  # no such stream in this chat: the same answer for everyone allowed in
    "surface subscribe": "surface",
    "surface unsubscribe": "unsubscribed",
    "ping": "pong",
}
MANAGE = {"set-enabled": "update", "set-interval": "update", "toggle": "update", "warm-now": "update"}
SOCKET = {
    "creator": {**MEMBER_OK, **MANAGE},
    "owner": {**MEMBER_OK, **MANAGE},
    "member": {**MEMBER_OK, **dict.fromkeys(MANAGE, "forbidden")},
    # A non-member learns nothing: not_found for every conversation and workspace; unsubscribing
    # from what one never joined is a no-op either way.
    "stranger": {
        **dict.fromkeys(MEMBER_OK, "not_found"),
        **dict.fromkeys(MANAGE, "not_found"),
        "unsubscribe": "unsubscribed",
        "surface unsubscribe": "unsubscribed",
        "ping": "pong",
    },
}
SOCKET["staff"] = SOCKET["stranger"]


def _answer(frame: dict) -> str:
    return frame["code"] if frame["type"] == "error" else frame["type"]


async def test_every_socket_message_as_every_actor(world):
    people, workspace, chat = world
    wrong = {}
    for actor in ACTORS:
        communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
        communicator.scope["user"] = people[actor] or AnonymousUser()
        connected, code = await communicator.connect()
        if actor == "anonymous":
            assert not connected and code == 4401
            continue
        assert connected
        for name, frame in _frames(chat, workspace).items():
            await communicator.send_json_to(frame)
            answer = await communicator.receive_json_from(timeout=5)
            while answer["type"] in ("tile", "tile.warming"):  # pushes to the workspace subscription
                answer = await communicator.receive_json_from(timeout=5)
            if answer["type"] == "error":
                for field in ("conversationId", "workspaceId", "surfaceId"):
                    assert answer.get(field) == frame.get(field), (actor, name, answer)  # echoed
            if _answer(answer) != SOCKET[actor][name]:
                wrong[(actor, name)] = (_answer(answer), SOCKET[actor][name])
        await communicator.disconnect()
    assert not wrong, wrong


def test_stop_is_for_the_turns_sender_the_chats_creator_and_the_owners(world):
    """Before, any member could stop any member's turn (while Close was the creator's and the owners')."""
    people, workspace, chat = world
    people["sender"] = factories.MembershipFactory(workspace=workspace, user__username="frank", role=Membership.Role.MEMBER).user
    expected = dict(anonymous=403, stranger=404, staff=404, member=403, sender=200, creator=200, owner=200)
    got = {}
    for actor in expected:
        # Given: a turn frank sent in bob's chat (queued: no worker takes it).
        turn = _api(people["sender"]).post(f"/api/mothership/chats/{chat.id}/messages", {"content": "hi"}, format="json")
        assert turn.status_code == 201, turn.content
        stream_id = turn.json()["stream_id"]

        # When: the actor presses Stop.
        answer = _api(people[actor]).post(f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": stream_id}, format="json")

        # Then: only the sender, the creator and the owners stop it; another member is told why.
        got[actor] = answer.status_code
        stream = Stream.objects.get(pk=stream_id)
        if answer.status_code == 200:
            assert answer.json()["cancelled"] is True and stream.status == "cancelled", actor
        else:
            assert stream.status == "queued", actor  # nothing stopped
            if actor == "member":
                assert answer.json()["detail"] == STOP_REFUSED
            assert (
                _api(people["sender"])
                .post(f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": stream_id}, format="json")
                .json()["cancelled"]
            )
    assert got == expected


def test_stop_and_send_is_for_the_turns_sender_the_chats_creator_and_the_owners(world):
    people, workspace, chat = world
    sender = factories.MembershipFactory(workspace=workspace, user__username="frank", role=Membership.Role.MEMBER).user
    stream_id = (
        _api(sender).post(f"/api/mothership/chats/{chat.id}/messages", {"content": "hi"}, format="json").json()["stream_id"]
    )

    # A member who neither sent the turn nor created the chat: 403, nothing stopped, nothing sent.
    refused = _api(people["member"]).post(
        f"/api/mothership/chats/{chat.id}/messages", {"content": "mine now", "interrupt": stream_id}, format="json"
    )
    assert refused.status_code == 403 and refused.json()["detail"] == STOP_REFUSED
    assert Stream.objects.get(pk=stream_id).status == "queued"
    assert not Message.objects.filter(chat=chat, content="mine now").exists()

    # The chat's creator may.
    taken = _api(people["creator"]).post(
        f"/api/mothership/chats/{chat.id}/messages", {"content": "mine now", "interrupt": stream_id}, format="json"
    )
    assert taken.status_code == 201, taken.content
    assert Stream.objects.get(pk=stream_id).status == "cancelled"
    locks.lock_release(chat_id=chat.id, stream_id=taken.json()["stream_id"])


# Origin → whether the socket lets it through (then the anonymous caller is refused with 4401).
# With MOTHERSHIP_HTTPS the request's own scheme is https; CSRF_TRUSTED_ORIGINS are full origins.
_LOCAL = {"ALLOWED_HOSTS": ["127.0.0.1", "localhost"], "CSRF_TRUSTED_ORIGINS": [], "MOTHERSHIP_HTTPS": False}
_TLS = {"ALLOWED_HOSTS": ["chat.example.com"], "CSRF_TRUSTED_ORIGINS": [], "MOTHERSHIP_HTTPS": True}
_TRUSTED = {**_TLS, "CSRF_TRUSTED_ORIGINS": ["https://chat.example.com", "https://*.teams.example.com"]}
ORIGINS = {
    "same origin": (_LOCAL, "127.0.0.1:8000", "http://127.0.0.1:8000", True),
    "another allowed host, same port": (_LOCAL, "127.0.0.1:8000", "http://localhost:8000", True),
    "default port": (_LOCAL, "127.0.0.1", "http://127.0.0.1", True),
    "another port": (_LOCAL, "127.0.0.1:8000", "http://127.0.0.1:8732", False),
    "another scheme": (_LOCAL, "127.0.0.1:8000", "https://127.0.0.1:8000", False),
    "a foreign host": (_LOCAL, "127.0.0.1", "http://evil.example", False),
    "null": (_LOCAL, "127.0.0.1", "null", False),
    "no Host header": (_LOCAL, None, "http://127.0.0.1:8000", False),
    "https": (_TLS, "chat.example.com", "https://chat.example.com", True),
    "https, port named": (_TLS, "chat.example.com", "https://chat.example.com:443", True),
    "https: http": (_TLS, "chat.example.com", "http://chat.example.com", False),
    "https: http on another port": (_TLS, "chat.example.com", "http://chat.example.com:8732", False),
    "https: another port": (_TLS, "chat.example.com", "https://chat.example.com:9999", False),
    "trusted, behind a proxy that rewrote Host": (_TRUSTED, "10.0.0.5:8000", "https://chat.example.com", True),
    "trusted: another port": (_TRUSTED, "10.0.0.5:8000", "https://chat.example.com:8443", False),
    "trusted: http": (_TRUSTED, "10.0.0.5:8000", "http://chat.example.com", False),
    "trusted subdomain": (_TRUSTED, "10.0.0.5:8000", "https://red.teams.example.com", True),
    "trusted subdomain: another port": (_TRUSTED, "10.0.0.5:8000", "https://red.teams.example.com:444", False),
    "trusted subdomain: another domain": (_TRUSTED, "10.0.0.5:8000", "https://teams.example.com.evil.example", False),
}


async def test_the_socket_lets_in_only_its_own_origins_by_scheme_host_and_port(settings):
    """Before, an allowed host matched any scheme and port (``http://host:8732``, ``https://host:9999``)."""
    from mothership.asgi import application

    wrong = {}
    for case, (values, host, origin, passes) in ORIGINS.items():
        for name, value in values.items():
            setattr(settings, name, value)
        headers = [(b"origin", origin.encode())] + ([(b"host", host.encode())] if host else [])
        communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
        connected, code = await communicator.connect()
        assert not connected
        if (code == 4401) is not passes:  # 4401: the origin passed, the anonymous caller did not
            wrong[case] = code
        await communicator.disconnect()
    assert not wrong, wrong


async def test_a_member_removed_while_subscribed_is_told_and_dropped(world):
    people, workspace, chat = world
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = people["member"]
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"

    await database_sync_to_async(Membership.objects.filter(user=people["member"], workspace=workspace).delete)()
    frame = await communicator.receive_json_from(timeout=5)
    assert (frame["type"], frame["code"], frame["conversationId"]) == ("error", "forbidden", str(chat.id))
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4403}
