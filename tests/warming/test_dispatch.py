"""The warming engine against the real database and Redis: claims, warms, stats, stop rules."""

from __future__ import annotations

import datetime
import threading

import pytest
from channels.testing.websocket import WebsocketCommunicator
from django.db import connection
from django.utils import timezone

from chats.models import Message
from chats.selectors import conversation_prefix
from chats.services import chat_create
from mothership.consumers import MothershipConsumer
from streams.providers import ProviderError
from streams.providers.local import LocalProvider
from streams.services import stream_run, stream_start
from warming import dispatch
from warming.models import WarmingSchedule
from warming.services import warming_update

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def inline(inline_turns, settings):
    settings.MOTHERSHIP_WARMING_MIN_INTERVAL = 1
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 30


def _talk(chat, content="hello there") -> None:
    turn = stream_start(chat=chat, content=content)
    assert stream_run(stream_id=turn.stream.id) == "completed"


def _due(chat, interval=60, ago=1) -> WarmingSchedule:
    warming_update(chat=chat, enabled=True, interval_seconds=interval)
    WarmingSchedule.objects.filter(chat=chat).update(next_warm_at=timezone.now() - datetime.timedelta(seconds=ago))
    return WarmingSchedule.objects.get(chat=chat)


def _warm(chat) -> dispatch.WarmResult:
    return dispatch.warm_run(chat_id=chat.id, token=dispatch.claim_one(chat_id=chat.id))


def test_the_dispatcher_claims_only_due_enabled_idle_rows_and_sends_one_message_per_batch(workspace):
    chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(8)]
    for chat in chats[:5]:
        _due(chat)
    warming_update(chat=chats[5], enabled=True)  # enabled but not due yet
    WarmingSchedule.objects.create(chat=chats[6], next_warm_at=timezone.now() - datetime.timedelta(seconds=5))  # disabled
    _due(chats[7])
    stream_start(chat=chats[7], content="busy")  # a turn streams: no warm
    sent = []

    report = dispatch.warming_dispatch_due(batch_size=2, enqueue=lambda ids, token: sent.append((ids, token)))

    assert report == {"claimed": 5, "batches": 3}
    assert [len(ids) for ids, _ in sent] == [2, 2, 1] and len({token for _, token in sent}) == 3
    assert sorted(i for ids, _ in sent for i in ids) == sorted(str(c.id) for c in chats[:5])
    assert dispatch.warming_dispatch_due(enqueue=lambda ids, token: sent.append(ids)) == {
        "claimed": 0,
        "batches": 0,
    }  # claimed rows are not due twice


def test_two_dispatchers_at_once_never_claim_a_row_twice(workspace):
    chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(60)]
    for chat in chats:
        _due(chat)
    claimed: list[str] = []
    lock = threading.Lock()

    def run():
        try:

            def enqueue(ids, token):
                with lock:
                    claimed.extend(ids)

            dispatch.warming_dispatch_due(batch_size=5, enqueue=enqueue)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(claimed) == sorted(str(c.id) for c in chats)  # every row once, none twice


async def test_a_warm_saves_the_future_next_warm_then_pushes_it(user, chat):
    from channels.db import database_sync_to_async

    await database_sync_to_async(_talk)(chat)
    await database_sync_to_async(_due)(chat, 120)
    tab = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    tab.scope["user"] = user
    await tab.connect()
    await tab.send_json_to({"type": "subscribe", "surfaceId": "cache-warming", "conversationId": str(chat.id)})
    await tab.receive_json_from(timeout=5)

    result = await database_sync_to_async(_warm)(chat)

    update = await tab.receive_json_from(timeout=5)
    await tab.disconnect()
    assert result.outcome == "warmed"
    timer = update["fields"]["timer"]
    assert timer["nextWarmAt"] == timer["lastWarmAt"] + 120_000  # CR-4b: the future one
    assert timer["nextWarmAt"] > timezone.now().timestamp() * 1000 + 100_000
    assert update["fields"]["lastCachePct"] == 100.0 and update["fields"]["warmCount"] == 1  # the turn left the prefix cached
    assert update["fields"]["lastWarmCost"] > 0 and update["fields"]["costPerHour"] == pytest.approx(
        update["fields"]["lastWarmCost"] * 30, rel=1e-3
    )
    schedule = await database_sync_to_async(WarmingSchedule.objects.get)(chat=chat)
    assert int(schedule.next_warm_at.timestamp() * 1000) == timer["nextWarmAt"]


def test_a_warm_never_adds_to_the_history(chat):
    _talk(chat)
    before = list(Message.objects.filter(chat=chat).values_list("id", "content"))
    _due(chat)
    assert _warm(chat).outcome == "warmed"
    assert list(Message.objects.filter(chat=chat).values_list("id", "content")) == before


def test_a_superseded_claim_warms_nothing(chat):
    _talk(chat)
    _due(chat)
    stale = dispatch.claim_one(chat_id=chat.id)
    fresh = dispatch.claim_one(chat_id=chat.id)  # re-claimed (e.g. after a lost message)
    assert dispatch.warm_run(chat_id=chat.id, token=stale).outcome == "superseded"
    assert dispatch.warm_run(chat_id=chat.id, token=fresh).outcome == "warmed"
    assert WarmingSchedule.objects.get(chat=chat).warm_count == 1


def test_a_sealed_turn_reschedules_to_sealed_at_plus_interval(chat):
    warming_update(chat=chat, enabled=True, interval_seconds=90)
    _talk(chat)
    schedule = WarmingSchedule.objects.get(chat=chat)
    sealed_at = chat.streams.get().finished_at
    assert schedule.next_warm_at == sealed_at + datetime.timedelta(seconds=90)
    assert schedule.last_turn_at == sealed_at


def test_the_cache_is_simulated_with_a_ttl_refreshed_by_each_read(chat, settings):
    _talk(chat)
    prefix = conversation_prefix(chat_id=chat.id)
    provider = LocalProvider()
    tokens = sum(len(m["content"].split()) for m in prefix)
    assert provider.warm(messages=prefix).cache_read_tokens == tokens  # the turn left it cached
    from mothership.infra.redis import get_redis

    get_redis().delete(provider._cache.key(prefix))  # the TTL ran out
    usage = provider.warm(messages=prefix)
    assert (usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens) == (0, tokens, 1)
    assert provider.warm(messages=prefix).cache_read_tokens == tokens


def test_three_failures_in_a_row_stop_warming_with_failures(chat, monkeypatch):
    _talk(chat)
    _due(chat)

    def broken(self, *, messages):
        raise ProviderError("overloaded")

    monkeypatch.setattr(LocalProvider, "warm", broken)  # the model API's edge
    for expected_enabled in (True, True, False):
        assert _warm(chat).outcome == "failed"
        schedule = WarmingSchedule.objects.get(chat=chat)
        assert schedule.enabled is expected_enabled and schedule.last_error == "overloaded"
    assert schedule.stop_reason == "failures" and schedule.next_warm_at is None


def test_two_misses_within_the_cache_ttl_stop_warming_but_the_first_warm_after_enabling_is_no_miss(chat, settings):
    settings.MOTHERSHIP_LOCAL_CACHE_MIN_TOKENS = 10_000  # this prefix is below the provider's minimum
    _talk(chat)
    _due(chat)
    outcomes = []
    for _ in range(3):
        _warm(chat)
        schedule = WarmingSchedule.objects.get(chat=chat)
        outcomes.append((schedule.enabled, schedule.stop_reason))
    assert outcomes == [(True, ""), (True, ""), (False, "cache_miss")]
    assert schedule.last_cache_pct == 0.0 and schedule.cache_retention == 0.0


def test_warming_stops_once_idle_warms_cost_more_than_one_rebuild(chat):
    _talk(chat, "a longer question " * 50)
    _due(chat, interval=240)
    prefix_tokens = sum(len(m["content"].split()) for m in conversation_prefix(chat_id=chat.id))
    warm_cost = (prefix_tokens * 0.30 + 15.0) / 1e6  # a cache read of the prefix plus 1 output token
    expected_warms = int(prefix_tokens * 3.75 / 1e6 / warm_cost) + 1  # the first warm that tips it over
    count = 0
    while WarmingSchedule.objects.get(chat=chat).enabled:
        _warm(chat)
        count += 1
        assert count <= 100
    schedule = WarmingSchedule.objects.get(chat=chat)
    assert (schedule.stop_reason, count) == ("not_worth_it", expected_warms)
    # At the default interval that is roughly the "about 50 idle minutes" of the design, for a large prefix.
    assert schedule.idle_warm_cost > dispatch.rebuild_cost(prefix_tokens, "any")


def test_the_idle_limit_stops_warming(chat, settings):
    settings.MOTHERSHIP_WARMING_IDLE_LIMIT = 60
    _talk(chat, "a longer question " * 50)
    _due(chat)
    WarmingSchedule.objects.filter(chat=chat).update(
        last_turn_at=timezone.now() - datetime.timedelta(minutes=5), enabled_at=timezone.now() - datetime.timedelta(minutes=5)
    )
    _warm(chat)
    schedule = WarmingSchedule.objects.get(chat=chat)
    assert (schedule.enabled, schedule.stop_reason) == (False, "idle_limit")
