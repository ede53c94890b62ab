"""/metrics for a whole deployment: two web processes, a turn worker, a background worker and beat,
on a turn queue of their own (so metrics of their own), scraped over HTTP after real turns, a stop,
warms and a worker killed and started again. Values are checked, not only names; every scrape is
parsed by prometheus-client's parser."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from django.db.models import Sum
from prometheus_client.parser import text_string_to_metric_families

from spend.models import Charge
from streams.models import Stream
from tests import factories
from tests.support import processes
from tests.support.waiting import wait_for
from warming.models import WarmingSchedule

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

COMPLETED, CANCELLED = 'mothership_streams_total{status="completed"}', 'mothership_streams_total{status="cancelled"}'
FIRST_DELTAS = "mothership_first_delta_seconds_count"
DELIVERED = "mothership_delivery_lag_seconds_count"
WARMED = 'mothership_warms_total{outcome="warmed"}'
LATENESS = "mothership_warm_lateness_seconds_count"
SOCKETS = "mothership_ws_connections"


@pytest.fixture(scope="module")
def deployment(django_db_setup, django_db_blocker, tmp_path_factory):
    """Every kind of process, flushing every 0.2 s; replies of 2 s (long enough to stop one)."""
    tmp = tmp_path_factory.mktemp("metrics")
    env = {
        "MOTHERSHIP_CELERY_QUEUE": f"metrics-{uuid.uuid4().hex[:8]}",
        "MOTHERSHIP_METRICS_FLUSH_SECONDS": 0.2,
        "MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": 100,
        "MOTHERSHIP_LOCAL_REPLY_TOKENS": 200,
        "MOTHERSHIP_WARMING_TICK": 0.2,
        "MOTHERSHIP_WARMING_MIN_INTERVAL": 1,
    }
    running = {
        "worker": processes.start_worker(tmp, name="turns", concurrency=4, queues="turns", **env),
        "background": processes.start_worker(tmp, name="background", concurrency=4, queues="background", **env),
        "beat": processes.start_beat(tmp, **env),
    }
    running["web-a"], url_a = processes.start_server(tmp, name="web-a", **env)
    running["web-b"], url_b = processes.start_server(tmp, name="web-b", **env)
    yield {"a": url_a, "b": url_b, "env": env, "tmp": tmp, "running": running}
    for proc in running.values():
        proc.stop()


def scrape(url: str) -> dict[str, float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    found = {}
    for family in text_string_to_metric_families(response.text):  # it must parse
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def until(url: str, expected: dict[str, float], timeout: float = 15) -> dict[str, float]:
    """Scrape until every named sample has its expected value (the processes flush every 0.2 s)."""
    seen: dict = {}

    def matches():
        nonlocal seen
        seen = scrape(url)
        return all(seen.get(name) == pytest.approx(value) for name, value in expected.items())

    try:
        wait_for(matches, timeout, "the expected metrics", every=0.2)
    except AssertionError:
        raise AssertionError(f"expected {expected}, scraped { ({k: seen.get(k) for k in expected}) }") from None
    return seen


async def _socket(url: str, token: str, *subscriptions: dict):
    ws = await websockets.connect(url.replace("http", "ws", 1) + f"/ws/?token={token}", close_timeout=0.2)
    for message in subscriptions:
        await ws.send(json.dumps(message))
        while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "subscribed":
            pass
    return ws


async def _until_event(ws, kind: str, frames: list) -> None:
    while not frames or frames[-1].get("type") != kind:
        frames.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))


async def _send(http: httpx.AsyncClient, url: str, chat_id) -> str:
    sent = await http.post(f"{url}/api/mothership/chats/{chat_id}/messages", json={"content": "count me"})
    assert sent.status_code == 201, sent.text
    return sent.json()["stream_id"]


def _ended(stream_id: str) -> Stream:
    stream = Stream.objects.get(pk=stream_id)
    return stream if not stream.is_live else None


async def test_turns_a_stop_and_a_worker_restart_are_counted_once_across_every_process(deployment, token, chat):
    url_a, url_b = deployment["a"], deployment["b"]
    other = await database_sync_to_async(factories.ChatFactory)(workspace=chat.workspace, title="second")
    before = await asyncio.to_thread(scrape, url_a)
    watch = await _socket(url_b, token, {"type": "subscribe", "conversationId": str(chat.id)})
    async with httpx.AsyncClient(headers={"Authorization": f"Token {token}"}, timeout=15) as http:
        # Two turns, sent through different web processes, run by the turn worker.
        first = await _send(http, url_a, chat.id)
        second = await _send(http, url_b, other.id)
        frames: list[dict] = []
        await _until_event(watch, "stream.completed", frames)
        await asyncio.to_thread(wait_for, lambda: _ended(second), 15, "the second turn's end")
        delivered = [f for f in frames if f.get("streamId") == first]
        assert delivered[-1]["type"] == "stream.completed"

        after_two = await asyncio.to_thread(
            until,
            url_b,
            {
                COMPLETED: before[COMPLETED] + 2,
                FIRST_DELTAS: before[FIRST_DELTAS] + 2,
                # Each event the watching socket was sent live, at web B; nobody else watched.
                DELIVERED: before[DELIVERED] + len(delivered),
            },
        )
        assert after_two[CANCELLED] == before[CANCELLED]
        charged = await database_sync_to_async(
            lambda: Charge.objects.filter(kind="turn", chat_id__in=[chat.id, other.id]).aggregate(s=Sum("cost_nanousd"))["s"]
        )()
        assert charged > 0
        spent = after_two['mothership_spend_usd_total{kind="turn"}'] - before['mothership_spend_usd_total{kind="turn"}']
        assert spent == pytest.approx(charged / 1e9)
        stream = await database_sync_to_async(Stream.objects.get)(pk=first)
        assert (
            after_two["mothership_first_delta_seconds_sum"] - before["mothership_first_delta_seconds_sum"]
            >= (stream.first_delta_at - stream.created_at).total_seconds() - 0.01
        )

        # A stop: live while it streams, counted as cancelled (not completed) once stopped.
        third = await _send(http, url_a, chat.id)
        frames = []
        await _until_event(watch, "stream.delta", frames)
        assert (await asyncio.to_thread(scrape, url_a))["mothership_streams_live"] == 1
        stopped = await http.post(f"{url_b}/api/mothership/chats/{chat.id}/cancel", json={"stream_id": third})
        assert stopped.json()["cancelled"] is True, stopped.text
        await _until_event(watch, "stream.cancelled", frames)
        await asyncio.to_thread(
            until, url_a, {CANCELLED: before[CANCELLED] + 1, COMPLETED: before[COMPLETED] + 2, "mothership_streams_live": 0}
        )

        # The turn worker killed outright: its counts were in Redis already, and its successor adds to them.
        running = deployment["running"]
        running["worker"].kill9()
        assert (await asyncio.to_thread(scrape, url_b))[COMPLETED] == before[COMPLETED] + 2
        running["worker"] = await asyncio.to_thread(
            processes.start_worker, deployment["tmp"], name="turns-again", concurrency=4, queues="turns", **deployment["env"]
        )
        fourth = await _send(http, url_b, other.id)
        await asyncio.to_thread(wait_for, lambda: _ended(fourth), 15, "the turn after the restart")
        await asyncio.to_thread(
            until,
            url_a,
            {COMPLETED: before[COMPLETED] + 3, CANCELLED: before[CANCELLED] + 1, FIRST_DELTAS: before[FIRST_DELTAS] + 4},
        )
    await watch.close()


async def test_ws_connections_equal_the_open_sockets_over_both_web_processes(deployment, token):
    url_a, url_b = deployment["a"], deployment["b"]
    await asyncio.to_thread(until, url_a, {SOCKETS: 0})  # every socket of the tests before is closed
    sockets = [await _socket(url_a, token), await _socket(url_a, token), await _socket(url_b, token)]
    await asyncio.to_thread(until, url_b, {SOCKETS: 3})
    await sockets.pop(0).close()
    await asyncio.to_thread(until, url_a, {SOCKETS: 2})
    for ws in sockets:
        await ws.close()
    await asyncio.to_thread(until, url_b, {SOCKETS: 0})


async def test_scheduled_warms_are_counted_with_their_lateness_and_spend(deployment, settings, chat):
    from warming.services import warming_update

    settings.MOTHERSHIP_WARMING_MIN_INTERVAL = 1  # this process validates the interval below
    url_a = deployment["a"]
    before = await asyncio.to_thread(scrape, url_a)
    await database_sync_to_async(factories.StreamFactory)(
        chat=chat, user_message__content="a prefix to keep warm", assistant_message__content="kept"
    )
    await database_sync_to_async(warming_update)(chat=chat, enabled=True, interval_seconds=1)

    def warms() -> int:
        return WarmingSchedule.objects.get(chat=chat).warm_count

    await asyncio.to_thread(wait_for, lambda: warms() >= 2, 20, "two warms by beat and the background worker")
    await database_sync_to_async(warming_update)(chat=chat, enabled=False)
    count = -1
    while count != (count := await database_sync_to_async(warms)()):  # a warm already claimed lands first
        await asyncio.sleep(1)
    charged = await database_sync_to_async(
        lambda: Charge.objects.filter(kind="warm", chat_id=chat.id).aggregate(s=Sum("cost_nanousd"))["s"] or 0
    )()
    after = await asyncio.to_thread(
        until,
        url_a,
        {
            WARMED: before[WARMED] + count,
            LATENESS: before[LATENESS] + count,  # every warm was a scheduled one
            'mothership_spend_usd_total{kind="warm"}': before['mothership_spend_usd_total{kind="warm"}'] + charged / 1e9,
        },
    )
    # Beat ticks every 0.2 s: no warm of an idle deployment is 2 s late.
    late_within_2s = (
        after['mothership_warm_lateness_seconds_bucket{le="2.0"}'] - before['mothership_warm_lateness_seconds_bucket{le="2.0"}']
    )
    assert late_within_2s == count
    assert after['mothership_warms_total{outcome="failed"}'] == before['mothership_warms_total{outcome="failed"}']
