"""Per-user limits: messages sent, warming changes and warms asked for by hand (a rate each,
counted in the shared Redis cache), and the turns a user may run at once. Past each, the API
answers 429 with ``Retry-After`` and a sentence, the socket ``rate_limited``; nothing is written."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from channels.testing.websocket import WebsocketCommunicator
from rest_framework.test import APIClient

from chats.models import Message
from mothership.consumers import MothershipConsumer
from mothership.infra.throttles import SCOPES, user_rate_reset
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
