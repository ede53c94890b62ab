"""Per-user limits: messages sent, warming changes, warms asked for by hand, chats created and tool
calls (a rate each, an exact count in Redis however many requests race), and the turns a user may
run at once. Past each, the API answers 429 with ``Retry-After`` and a sentence, the socket
``rate_limited``; nothing is written."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from channels.testing.websocket import WebsocketCommunicator
from django.db import connection
from rest_framework.exceptions import Throttled
from rest_framework.test import APIClient

from chats.models import Chat, Message
from mothership.consumers import MothershipConsumer
from mothership.infra.login_limits import login_rate_reset
from mothership.infra.throttles import SCOPES, user_rate_check, user_rate_reset
from streams import locks
from streams.models import Stream
from tests import factories
from tests.support.processes import process_env
from tests.support.threads import app_thread
from warming.models import WarmingSchedule

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limits(settings, user):
    """The suite raises every limit (tests/support/embedded.py); each test here sets its own."""
    for scope in SCOPES:
        user_rate_reset(scope=scope, user=user)
    return settings


def _send(api, chat, content="hi"):
    return api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": content}, format="json")


def test_sends_past_the_users_rate_answer_429_and_write_nothing(limits, api, workspace, turns_not_enqueued):
    limits.MOTHERSHIP_SEND_RATE = "3/min"
    chats = [factories.ChatFactory(workspace=workspace) for _ in range(4)]
    assert [_send(api, chat).status_code for chat in chats[:3]] == [201, 201, 201]

    refused = _send(api, chats[3])
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("Too many messages sent.")
    assert not Message.objects.filter(chat=chats[3]).exists()
    assert locks.lock_owner(chat_id=chats[3].pk) is None

    # The count is the user's: another member of the same workspace sends as before.
    other = factories.MembershipFactory(workspace=workspace).user
    user_rate_reset(scope="send", user=other)
    client = APIClient()
    client.force_authenticate(other)
    assert _send(client, chats[3]).status_code == 201


def test_a_user_runs_at_most_the_cap_of_turns_at_once(limits, api, user, workspace, turns_not_enqueued):
    limits.MOTHERSHIP_MAX_CONCURRENT_TURNS = 2
    chats = [factories.ChatFactory(workspace=workspace) for _ in range(3)]
    started = [_send(api, chat) for chat in chats[:2]]
    assert [r.status_code for r in started] == [201, 201]
    assert Stream.objects.filter(started_by=user).count() == 2

    refused = _send(api, chats[2])
    assert refused.status_code == 429 and refused["Retry-After"] == "5"
    assert "2 replies running" in refused.json()["detail"]
    assert not Stream.objects.filter(chat=chats[2]).exists() and not Message.objects.filter(chat=chats[2]).exists()
    assert locks.lock_owner(chat_id=chats[2].pk) is None  # the refused start gave its lock back

    # A finished turn frees its place.
    stream_id = started[0].json()["stream_id"]
    assert api.post(f"/api/mothership/chats/{chats[0].id}/cancel", {"stream_id": stream_id}, format="json").json()["cancelled"]
    assert _send(api, chats[2]).status_code == 201


def test_the_cap_holds_when_sends_race(limits, user, workspace, turns_not_enqueued):
    """Six sends at once in six chats with a cap of two: exactly two start (the user's row lock
    makes the count and the insert one step; on SQLite the database's write lock does)."""
    limits.MOTHERSHIP_MAX_CONCURRENT_TURNS = 2
    chats = [factories.ChatFactory(workspace=workspace) for _ in range(6)]
    statuses, barrier = [], threading.Barrier(len(chats))

    def send(chat):
        client = APIClient()
        client.force_authenticate(user)
        barrier.wait()
        statuses.append(_send(client, chat).status_code)

    threads = [app_thread(lambda chat=chat: send(chat)) for chat in chats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [201, 201, 429, 429, 429, 429]
    assert Stream.objects.filter(started_by=user, status__in=Stream.LIVE_STATUSES).count() == 2


def test_warming_changes_share_one_rate_on_the_api_and_the_socket(limits, api, user, chat):
    limits.MOTHERSHIP_WARMING_CHANGE_RATE = "2/min"
    url = f"/api/mothership/chats/{chat.id}/warming"
    assert api.put(url, {"enabled": True}, format="json").status_code == 200
    assert api.put(url, {"interval_seconds": 120}, format="json").status_code == 200
    refused = api.put(url, {"enabled": False}, format="json")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["detail"].startswith("Too many warming changes.")
    assert WarmingSchedule.objects.get(chat=chat).enabled is True  # nothing changed

    async def on_the_socket():
        communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
        communicator.scope["user"] = user
        assert (await communicator.connect())[0]
        invoke = {"type": "invoke", "surfaceId": "cache-warming", "conversationId": str(chat.id)}
        await communicator.send_json_to({**invoke, "action": "set-enabled", "payload": False})
        frame = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return frame

    frame = asyncio.run(on_the_socket())
    assert (frame["type"], frame["code"], frame["conversationId"]) == ("error", "rate_limited", str(chat.id)), frame
    assert frame["message"].startswith("Too many warming changes.")
    assert WarmingSchedule.objects.get(chat=chat).enabled is True


async def test_warm_now_past_its_rate_is_refused_and_sends_no_warm(limits, user, chat, monkeypatch):
    from warming.tasks import warm_batch

    queued: list = []  # the warms that would go to a worker (the suite's live worker would run them)
    monkeypatch.setattr(warm_batch, "apply_async", lambda args, **options: queued.append(args))
    limits.MOTHERSHIP_WARM_NOW_RATE = "1/min"
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    invoke = {"type": "invoke", "surfaceId": "cache-warming", "conversationId": str(chat.id), "action": "warm-now"}
    await communicator.send_json_to(invoke)
    assert (await communicator.receive_json_from(timeout=5))["type"] == "update"
    assert len(queued) == 1

    await communicator.send_json_to(invoke)
    frame = await communicator.receive_json_from(timeout=5)
    assert (frame["type"], frame["code"]) == ("error", "rate_limited"), frame
    assert frame["message"].startswith("Too many warms asked for.")
    assert len(queued) == 1
    await communicator.disconnect()


def test_a_rate_that_is_not_a_rate_stops_the_app_at_start():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=Path(__file__).resolve().parents[2],
        env=process_env(MOTHERSHIP_SEND_RATE="lots"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "MOTHERSHIP_SEND_RATE must look like 30/min" in result.stderr


THREADS, ATTEMPTS = 20, 10  # 200 attempts at once against a rate of 60
RACE_RATE = "60/hour"  # per hour: a slow machine that takes a minute over the 200 still sees one window


def _race(attempt) -> list:
    """``attempt(i)`` from 20 threads, 10 each, all released at once; the results in any order."""
    results, barrier = [], threading.Barrier(THREADS)

    def run(thread_no):
        barrier.wait()
        for i in range(ATTEMPTS):
            results.append(attempt(thread_no * ATTEMPTS + i))
            # As a server's request ends: the connection back to the pool (the test client keeps it
            # otherwise, and 20 threads would wait on PostgreSQL's pool of 8 and answer 503).
            connection.close()

    threads = [app_thread(lambda n=n: run(n)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == THREADS * ATTEMPTS
    return results


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_every_per_user_rate_is_exact_when_20_threads_race(limits, user, scope):
    setattr(limits, SCOPES[scope][0], RACE_RATE)

    def attempt(i):
        try:
            user_rate_check(scope=scope, user=user)
        except Throttled as exc:
            assert 0 < exc.wait <= 3600
            return False
        return True

    assert sum(_race(attempt)) == 60


def test_200_sends_at_once_pass_exactly_the_rate(limits, user, workspace, turns_not_enqueued):
    limits.MOTHERSHIP_SEND_RATE = RACE_RATE
    chats = [factories.ChatFactory(workspace=workspace) for _ in range(THREADS * ATTEMPTS)]

    def send(i):
        client = APIClient()
        client.force_authenticate(user)
        return _send(client, chats[i]).status_code

    statuses = _race(send)
    assert (statuses.count(201), statuses.count(429)) == (60, 140)
    assert Stream.objects.filter(started_by=user).count() == 60


def test_200_warming_changes_at_once_pass_exactly_the_rate(limits, user, chat):
    limits.MOTHERSHIP_WARMING_CHANGE_RATE = RACE_RATE
    url = f"/api/mothership/chats/{chat.id}/warming"

    def change(i):
        client = APIClient()
        client.force_authenticate(user)
        return client.put(url, {"interval_seconds": 60 + i}, format="json").status_code

    statuses = _race(change)
    assert (statuses.count(200), statuses.count(429)) == (60, 140)


def test_chat_creation_is_limited_on_the_api_and_the_page_alike(limits, api, user, workspace, browser_client):
    limits.MOTHERSHIP_CHAT_CREATE_RATE = "3/min"
    body = {"workspace": str(workspace.id), "title": "one more"}
    assert [api.post("/api/mothership/chats", body, format="json").status_code for _ in range(2)] == [201, 201]
    assert browser_client.post("/chats/new", {"workspace": str(workspace.id)}).status_code == 302

    refused = api.post("/api/mothership/chats", body, format="json")
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("Too many chats created.")
    page = browser_client.post("/chats/new", {"workspace": str(workspace.id), "title": "one more"})
    assert page.status_code == 429 and 0 < int(page["Retry-After"]) <= 60
    assert page.content.decode().startswith("Too many chats created.")
    assert Chat.objects.filter(workspace=workspace).count() == 3


def test_200_chat_creations_at_once_pass_exactly_the_rate(limits, user, workspace):
    limits.MOTHERSHIP_CHAT_CREATE_RATE = RACE_RATE
    body = {"workspace": str(workspace.id)}

    def create(i):
        client = APIClient()
        client.force_authenticate(user)
        return client.post("/api/mothership/chats", body, format="json").status_code

    statuses = _race(create)
    assert (statuses.count(201), statuses.count(429)) == (60, 140)
    assert Chat.objects.filter(workspace=workspace).count() == 60


def test_200_sign_ins_at_once_from_one_address_pass_exactly_its_rate(limits, make_user):
    limits.MOTHERSHIP_LOGIN_RATE = RACE_RATE
    login_rate_reset(address="127.0.0.1")
    user = make_user()  # its failures stay below the suite's lockout limit, and no other test signs in as it

    def sign_in(i):
        return APIClient().post("/api/auth/token", {"username": user.username, "password": "wrong"}, format="json").status_code

    statuses = _race(sign_in)
    assert (statuses.count(400), statuses.count(429)) == (60, 140), sorted(set(statuses))  # nothing else (no 503)
