"""Warming with a real Celery beat and worker (seeds/dispatch-…): truthful countdown, no browser needed."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator

from mothership.consumers import MothershipConsumer
from streams.models import Stream
from tests.support import processes
from tests.support.warming import wait_until_warmed_after, warming_witness
from warming.models import WarmingSchedule

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]
SURFACE = "cache-warming"


@pytest.fixture
def warming_beat(live_worker, tmp_path, settings):
    """Real beat ticking the dispatcher every 0.2 s; the session's worker runs the warms."""
    settings.MOTHERSHIP_WARMING_MIN_INTERVAL = 1  # this process validates the short intervals below
    proc = processes.start_beat(tmp_path, MOTHERSHIP_WARMING_TICK=0.2)
    yield proc
    proc.stop()


async def _turn(api, chat, content: str) -> Stream:
    sent = await database_sync_to_async(api.post)(
        f"/api/mothership/chats/{chat.id}/messages", {"content": content}, format="json"
    )
    assert sent.status_code == 201
    for _ in range(200):
        stream = await database_sync_to_async(Stream.objects.get)(pk=sent.json()["stream_id"])
        if not stream.is_live:
            return stream
        await asyncio.sleep(0.05)
    raise AssertionError("the turn did not finish")


async def _invoke(tab, chat, action, payload):
    await tab.send_json_to(
        {"type": "invoke", "surfaceId": SURFACE, "conversationId": str(chat.id), "action": action, "payload": payload}
    )
    update = await tab.receive_json_from(timeout=5)
    assert update["type"] == "update", update
    return update


async def _warm_count(chat) -> int:
    schedule = await database_sync_to_async(WarmingSchedule.objects.filter(chat=chat).first)()
    return schedule.warm_count if schedule else 0


async def test_automatic_warms_push_a_future_countdown_a_sealed_turn_reschedules_and_close_stops_them(
    warming_beat, api, user, chat
):
    await _turn(api, chat, "first question")
    tab = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    tab.scope["user"] = user
    assert (await tab.connect())[0]
    await tab.send_json_to({"type": "subscribe", "surfaceId": SURFACE, "conversationId": str(chat.id)})
    surface = await tab.receive_json_from(timeout=5)
    assert surface["fields"]["enabled"] is False and surface["fields"]["timer"]["nextWarmAt"] is None

    await _invoke(tab, chat, "set-interval", 2)
    await _invoke(tab, chat, "set-enabled", True)

    warms = []
    while len(warms) < 3:
        update = await tab.receive_json_from(timeout=10)
        received_ms = time.time() * 1000
        assert update["type"] == "update" and update["conversationId"] == str(chat.id)
        timer = update["fields"]["timer"]
        assert timer["nextWarmAt"] > received_ms  # never a time in the past (CR-4b)
        assert timer["nextWarmAt"] == timer["lastWarmAt"] + 2000
        warms.append(timer["lastWarmAt"])
    for earlier, later in zip(warms, warms[1:]):
        assert abs((later - earlier) - 2000) <= 1000  # one interval apart, ±1 s
    assert update["fields"]["lastCachePct"] == 100.0  # the first turn's prefix stays cached

    stream = await _turn(api, chat, "second question")
    sealed_ms = int(stream.finished_at.timestamp() * 1000)
    while True:  # the update pushed by the seal (a warm may be pushed before it)
        update = await tab.receive_json_from(timeout=10)
        if update["fields"]["timer"]["nextWarmAt"] == sealed_ms + 2000:
            break
        assert update["fields"]["timer"]["lastWarmAt"] is not None and update["fields"]["timer"]["lastWarmAt"] < sealed_ms

    witness = await database_sync_to_async(warming_witness)(workspace_id=chat.workspace_id, interval=2)
    due = (await database_sync_to_async(WarmingSchedule.objects.get)(chat=chat)).next_warm_at.timestamp()
    closed = await database_sync_to_async(api.post)(f"/api/mothership/chats/{chat.id}/close", {}, format="json")
    assert closed.json()["warming_disabled"] is True
    count = await _warm_count(chat)
    # No warm may happen: not while beat warms another chat past the time this one was due.
    await database_sync_to_async(wait_until_warmed_after)(witness, due + 0.2)
    assert await _warm_count(chat) == count
    schedule = await database_sync_to_async(WarmingSchedule.objects.get)(chat=chat)
    assert (schedule.enabled, schedule.stop_reason, schedule.next_warm_at) == (False, "closed", None)
    await tab.disconnect()


async def test_warms_go_on_with_no_socket_connected(warming_beat, api, chat):
    from warming.services import warming_update

    await _turn(api, chat, "a question")
    await database_sync_to_async(warming_update)(chat=chat, enabled=True, interval_seconds=1)
    deadline = time.monotonic() + 10
    while await _warm_count(chat) < 3:
        assert time.monotonic() < deadline, "warms did not happen without a browser"
        await asyncio.sleep(0.2)
    schedule = await database_sync_to_async(WarmingSchedule.objects.get)(chat=chat)
    assert schedule.enabled and schedule.next_warm_at > schedule.last_warm_at


async def test_warming_stops_itself_at_the_monthly_budget_and_the_tab_hears_why(warming_beat, api, user, chat):
    from decimal import Decimal

    from spend.models import Charge
    from spend.services import budget_set
    from tests.factories import spent

    # Given a warmed conversation, in a workspace with room for a few warms this month
    await _turn(api, chat, "a question worth keeping warm " * 20)
    so_far = await database_sync_to_async(lambda: sum(c.cost_nanousd for c in Charge.objects.all()))()
    await database_sync_to_async(budget_set)(workspace_id=chat.workspace_id, monthly_usd=Decimal("1"), member_daily_usd=None)
    await database_sync_to_async(spent)(chat.workspace, nanousd=10**9 - so_far - 150_000)  # about three warms left
    tab = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    tab.scope["user"] = user
    assert (await tab.connect())[0]
    await tab.send_json_to({"type": "subscribe", "surfaceId": SURFACE, "conversationId": str(chat.id)})
    await tab.receive_json_from(timeout=5)

    # When warming is on, every second, with the real beat and worker
    await _invoke(tab, chat, "set-interval", 1)
    await _invoke(tab, chat, "set-enabled", True)

    # Then it warms while the month has room, then stops itself, saying why, and spends no more
    deadline = time.monotonic() + 20
    while True:
        update = await tab.receive_json_from(timeout=max(0.1, deadline - time.monotonic()))
        if update["fields"]["stopReason"]:
            break
    assert (update["fields"]["enabled"], update["fields"]["stopReason"]) == (False, "budget")
    warms = await database_sync_to_async(lambda: list(Charge.objects.filter(kind="warm")))()
    assert 1 <= len(warms) <= 3
    assert await database_sync_to_async(lambda: sum(c.cost_nanousd for c in Charge.objects.all()))() <= 10**9
    await tab.disconnect()
