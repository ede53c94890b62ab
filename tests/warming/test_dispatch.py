"""The warming engine against the real database and Redis: claims, warms, stats, stop rules."""

from __future__ import annotations

import datetime
import threading

import pytest
from channels.testing.websocket import WebsocketCommunicator
from django.db import connection, transaction
from django.utils import timezone

from chats.models import Message
from chats.selectors import conversation_prefix
from chats.services import chat_create
from mothership.consumers import MothershipConsumer
from mothership.services import chat_close
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


@pytest.mark.postgres
def test_a_dispatcher_skips_the_rows_another_one_holds_without_waiting_for_them(workspace):
    # Given 10 due schedules, 4 of them row-locked by another dispatcher's open claim
    chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(10)]
    for chat in chats:
        _due(chat)
    held_ids = [c.id for c in chats[:4]]
    holding, release = threading.Event(), threading.Event()

    def other_dispatcher():
        try:
            with transaction.atomic():
                list(WarmingSchedule.objects.select_for_update().filter(chat_id__in=held_ids))
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    other = threading.Thread(target=other_dispatcher)
    other.start()
    assert holding.wait(10)
    claimed: list[str] = []

    def dispatch_now():
        try:
            dispatch.warming_dispatch_due(batch_size=3, enqueue=lambda ids, token: claimed.extend(ids))
        finally:
            connection.close()

    # When this dispatcher runs meanwhile
    this = threading.Thread(target=dispatch_now)
    this.start()
    this.join(10)
    finished_while_held = not this.is_alive()
    release.set()
    other.join(10)
    this.join(30)

    # Then it never waited for the held rows, and claimed every other row once
    assert finished_while_held, "the dispatcher blocked on rows another dispatcher holds"
    assert sorted(claimed) == sorted(str(c.id) for c in chats[4:])


@pytest.mark.postgres
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


@pytest.fixture
def model_calls(monkeypatch) -> list[list[dict]]:
    """Every prefix the model was asked to warm (the real local model still answers)."""
    calls: list[list[dict]] = []
    original = LocalProvider.warm
    monkeypatch.setattr(
        LocalProvider, "warm", lambda self, *, messages: calls.append(messages) or original(self, messages=messages)
    )
    return calls


def test_a_superseded_claim_warms_nothing(chat, model_calls):
    _talk(chat)
    _due(chat)
    stale = dispatch.claim_one(chat_id=chat.id)
    fresh = dispatch.claim_one(chat_id=chat.id)  # re-claimed (e.g. after a lost message)
    assert dispatch.warm_run(chat_id=chat.id, token=stale) == dispatch.WarmResult(str(chat.id), "superseded")
    assert model_calls == []  # nothing is spent on a claim that is no longer the row's
    assert dispatch.warm_run(chat_id=chat.id, token=fresh) == dispatch.WarmResult(str(chat.id), "warmed")
    assert WarmingSchedule.objects.get(chat=chat).warm_count == 1 and len(model_calls) == 1


def test_one_chat_of_a_batch_voided_or_streaming_leaves_the_others_claims_alone(workspace, model_calls):
    from warming.tasks import warm_batch

    voided, streaming, fine = chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(3)]
    for chat in chats:
        _talk(chat)
        _due(chat)
    sent = []
    dispatch.warming_dispatch_due(enqueue=lambda ids, token: sent.append((ids, token)))
    ((ids, token),) = sent
    dispatch.warming_on_turn_sealed(chat_id=voided.id, sealed_at=timezone.now())  # its claim is void
    stream_start(chat=streaming, content="busy")

    outcomes = {chat_id: dispatch.warm_run(chat_id=chat_id, token=token) for chat_id in ids}

    assert outcomes == {
        str(voided.id): dispatch.WarmResult(str(voided.id), "superseded"),
        str(streaming.id): dispatch.WarmResult(str(streaming.id), "skipped_streaming"),
        str(fine.id): dispatch.WarmResult(str(fine.id), "warmed"),
    }
    assert len(model_calls) == 1
    assert warm_batch(ids, token) == {"superseded": 3}  # a redelivered message warms nothing twice


def test_an_empty_conversation_is_not_sent_to_the_model_and_is_rescheduled(chat, model_calls, monkeypatch):
    _due(chat, interval=60)
    pushed = []
    monkeypatch.setattr(dispatch, "warming_push", lambda *, chat_id: pushed.append(chat_id))

    assert _warm(chat) == dispatch.WarmResult(str(chat.id), "empty")

    assert model_calls == [] and pushed == [chat.id]
    schedule = WarmingSchedule.objects.get(chat=chat)
    assert (schedule.claim_token, schedule.claimed_at, schedule.warm_count, schedule.last_error) == ("", None, 0, "")
    assert 55 < (schedule.next_warm_at - timezone.now()).total_seconds() <= 60
    warming_update(chat=chat, enabled=False)
    assert _warm(chat).outcome == "empty" and WarmingSchedule.objects.get(chat=chat).next_warm_at is None


def test_an_unexpected_error_in_a_warm_is_recorded_and_logged_never_raised(chat, monkeypatch, caplog):
    _talk(chat)
    _due(chat)

    def broken(self, *, messages):
        raise RuntimeError("socket closed " + "x" * 600)

    monkeypatch.setattr(LocalProvider, "warm", broken)

    assert _warm(chat) == dispatch.WarmResult(str(chat.id), "failed")

    schedule = WarmingSchedule.objects.get(chat=chat)
    assert schedule.last_error == ("RuntimeError: socket closed " + "x" * 600)[:500]
    assert schedule.consecutive_failures == 1 and schedule.enabled
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [f"warm of chat {chat.id} failed"]
    monkeypatch.setattr(LocalProvider, "warm", lambda self, *, messages: (_ for _ in ()).throw(ProviderError("")))
    assert _warm(chat).outcome == "failed"
    assert WarmingSchedule.objects.get(chat=chat).last_error == "provider error"  # never an empty reason


def test_the_stats_count_every_warm_hit_miss_and_failure(chat, monkeypatch):
    from mothership.infra.redis import get_redis

    _talk(chat)
    _due(chat)
    prefix = conversation_prefix(chat_id=chat.id)
    tokens = sum(len(m["content"].split()) for m in prefix)

    def fields():
        s = WarmingSchedule.objects.get(chat=chat)
        return (s.warm_count, s.hit_count, s.miss_count, s.consecutive_misses, s.consecutive_failures, s.last_error)

    assert _warm(chat).outcome == "warmed"  # the turn left the prefix cached: a hit
    assert fields() == (1, 1, 0, 0, 0, "")
    schedule = WarmingSchedule.objects.get(chat=chat)
    assert (schedule.prefix_tokens, schedule.last_cache_pct) == (tokens, 100.0)
    original = LocalProvider.warm
    monkeypatch.setattr(LocalProvider, "warm", lambda self, *, messages: (_ for _ in ()).throw(ProviderError("overloaded")))
    assert _warm(chat).outcome == "failed"
    assert fields() == (1, 1, 0, 0, 1, "overloaded")
    monkeypatch.setattr(LocalProvider, "warm", original)
    assert _warm(chat).outcome == "warmed"
    assert fields() == (2, 2, 0, 0, 0, "")  # a success clears the failure streak and its message
    get_redis().delete(LocalProvider()._cache.key(prefix))  # the cache expired: the next warm rewrites it
    assert _warm(chat).outcome == "warmed"
    assert fields() == (3, 2, 1, 1, 0, "")
    schedule = WarmingSchedule.objects.get(chat=chat)
    assert (schedule.prefix_tokens, schedule.last_cache_pct) == (tokens, 0.0)  # written, not read
    assert schedule.last_warm_cost == pytest.approx((tokens * 3.75 + 15.0) / 1e6)  # a cache write, at its price
    assert _warm(chat).outcome == "warmed"
    assert fields() == (4, 3, 1, 0, 0, "")
    assert WarmingSchedule.objects.get(chat=chat).cache_retention == 0.75


def test_one_warm_of_a_batch_voided_in_flight_never_writes_into_another_chats_schedule(workspace, monkeypatch):
    voided, other = chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(2)]
    for chat in chats:
        _talk(chat)
        _due(chat)
    sent = []
    dispatch.warming_dispatch_due(enqueue=lambda ids, token: sent.append(token))
    (token,) = sent
    original = LocalProvider.warm

    def warm_then_void(self, *, messages):
        usage = original(self, messages=messages)
        dispatch.warming_on_turn_sealed(chat_id=voided.id, sealed_at=timezone.now())
        return usage

    monkeypatch.setattr(LocalProvider, "warm", warm_then_void)
    before = _schedule_row(other)

    assert dispatch.warm_run(chat_id=voided.id, token=token).outcome == "superseded"

    assert _schedule_row(other) == before  # still claimed by the batch, untouched
    monkeypatch.setattr(LocalProvider, "warm", original)
    assert dispatch.warm_run(chat_id=other.id, token=token).outcome == "warmed"
    assert WarmingSchedule.objects.get(chat=other).warm_count == 1


def test_a_warm_is_priced_at_its_models_row_of_the_price_table(chat, settings):
    _talk(chat)
    _due(chat)
    settings.MOTHERSHIP_PRICES = {
        "default": {"input": 3.0, "cache_read": 0.30, "cache_write": 3.75, "output": 15.0},
        settings.LLM_MODEL: {"input": 1.0, "cache_read": 0.5, "cache_write": 2.0, "output": 4.0},
    }

    assert _warm(chat).outcome == "warmed"

    schedule = WarmingSchedule.objects.get(chat=chat)
    assert schedule.last_warm_cost == pytest.approx((schedule.prefix_tokens * 0.5 + 1 * 4.0) / 1e6)
    assert schedule.enabled  # at these prices keeping the cache warm is still worth it
    # At a model whose cache writes cost less than one keep-alive warm, one idle warm is not.
    settings.MOTHERSHIP_PRICES[settings.LLM_MODEL]["cache_write"] = 0.1
    assert _warm(chat).outcome == "warmed"
    assert WarmingSchedule.objects.get(chat=chat).stop_reason == "not_worth_it"


@pytest.fixture
def sent_to_worker(monkeypatch) -> list[dict]:
    """What would go to the worker's queue: each ``warm_batch`` message's arguments."""
    from warming.tasks import warm_batch

    sent: list[dict] = []
    monkeypatch.setattr(warm_batch, "apply_async", lambda **message: sent.append(message))
    return sent


def test_each_batch_goes_to_the_worker_with_its_claim_token_and_expires_with_the_claim(workspace, sent_to_worker):
    from warming.tasks import warm_batch

    chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(3)]
    for chat in chats:
        _talk(chat)
        _due(chat)

    assert dispatch.warming_dispatch_due(batch_size=2) == {"claimed": 3, "batches": 2}

    assert [sorted(m) for m in sent_to_worker] == [["args", "expires"]] * 2
    assert {m["expires"] for m in sent_to_worker} == {dispatch.CLAIM_LEASE.total_seconds()}
    assert sorted(i for m in sent_to_worker for i in m["args"][0]) == sorted(str(c.id) for c in chats)
    # The worker runs each message as sent: every conversation warmed once, its claim given back.
    assert [warm_batch(*m["args"]) for m in sent_to_worker] == [{"warmed": 2}, {"warmed": 1}]
    assert [s.warm_count for s in WarmingSchedule.objects.filter(chat__in=chats)] == [1, 1, 1]
    assert set(WarmingSchedule.objects.filter(chat__in=chats).values_list("claim_token", flat=True)) == {""}


def test_warm_now_queues_one_warm_that_the_worker_runs_and_refuses_while_a_turn_streams(chat, sent_to_worker):
    from warming.tasks import warm_batch

    _talk(chat)

    assert dispatch.warming_warm_now(chat_id=chat.id) == dispatch.WarmResult(str(chat.id), "queued")

    (message,) = sent_to_worker
    assert message["args"][0] == [str(chat.id)] and message["expires"] == dispatch.CLAIM_LEASE.total_seconds()
    assert message["args"][1] == WarmingSchedule.objects.get(chat=chat).claim_token != ""
    assert WarmingSchedule.objects.get(chat=chat).claimed_at is not None  # leased: the dispatcher leaves it alone
    assert warm_batch(*message["args"]) == {"warmed": 1}
    assert WarmingSchedule.objects.get(chat=chat).next_warm_at is None  # warming is off: a one-off warm schedules nothing
    assert dispatch.warming_warm_now(chat_id=chat.id, inline=True) == dispatch.WarmResult(str(chat.id), "warmed")  # (admin)
    assert WarmingSchedule.objects.get(chat=chat).warm_count == 2 and len(sent_to_worker) == 1
    stream_start(chat=chat, content="a turn that streams")
    assert dispatch.warming_warm_now(chat_id=chat.id) == dispatch.WarmResult(str(chat.id), "skipped_streaming")
    assert len(sent_to_worker) == 1 and WarmingSchedule.objects.get(chat=chat).claim_token == ""


def _schedule_row(chat) -> dict:
    return WarmingSchedule.objects.filter(chat=chat).values().get()


def _voided_by(meanwhile: str, chat) -> None:
    if meanwhile == "re-claimed":  # e.g. after the dispatcher presumed the first claim lost
        dispatch.claim_one(chat_id=chat.id)
    elif meanwhile == "disabled":
        warming_update(chat=chat, enabled=False)
    elif meanwhile == "closed":
        chat_close(chat=chat)
    elif meanwhile == "turn sealed":
        _talk(chat, "a turn while the warm was in flight")
    else:
        raise AssertionError(meanwhile)


@pytest.mark.parametrize("meanwhile", ["re-claimed", "disabled", "closed", "turn sealed"])
def test_a_warm_whose_claim_was_voided_while_in_flight_records_nothing(chat, monkeypatch, meanwhile):
    # Given a due schedule claimed for a warm, and a model call during which the claim is voided
    _talk(chat)
    _due(chat, interval=60)
    token = dispatch.claim_one(chat_id=chat.id)
    original, seen = LocalProvider.warm, {}

    def warm_while_voided(self, *, messages):
        usage = original(self, messages=messages)
        _voided_by(meanwhile, chat)
        seen["row"] = _schedule_row(chat)
        return usage

    monkeypatch.setattr(LocalProvider, "warm", warm_while_voided)

    # When the warm lands
    result = dispatch.warm_run(chat_id=chat.id, token=token)

    # Then it is superseded and the newer state of the schedule is left exactly as it was
    assert result.outcome == "superseded"
    assert seen["row"]["warm_count"] == 0
    assert _schedule_row(chat) == seen["row"]


def test_no_warm_while_a_turn_streams_and_the_seal_reschedules_it(chat, monkeypatch):
    # Given a schedule claimed just before a turn started
    _talk(chat)
    _due(chat, interval=60)
    token = dispatch.claim_one(chat_id=chat.id)
    turn = stream_start(chat=chat, content="a turn that streams")
    calls = []
    original = LocalProvider.warm
    monkeypatch.setattr(
        LocalProvider, "warm", lambda self, *, messages: calls.append(messages) or original(self, messages=messages)
    )

    # When the claimed warm runs, and a warm-now is asked for, while the turn streams
    assert dispatch.warm_run(chat_id=chat.id, token=token).outcome == "skipped_streaming"
    assert dispatch.warming_warm_now(chat_id=chat.id, inline=True).outcome == "skipped_streaming"

    # Then the model is never called, and the claim is given back
    assert calls == []
    schedule = WarmingSchedule.objects.get(chat=chat)
    assert (schedule.warm_count, schedule.claim_token, schedule.claimed_at) == (0, "", None)
    # And the turn's seal reschedules the warm to sealed_at + interval
    assert stream_run(stream_id=turn.stream.id) == "completed"
    schedule.refresh_from_db()
    assert schedule.next_warm_at == chat.streams.get(pk=turn.stream.id).finished_at + datetime.timedelta(seconds=60)
    assert dispatch.warm_run(chat_id=chat.id, token=dispatch.claim_one(chat_id=chat.id)).outcome == "warmed"
    assert len(calls) == 1


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


def test_three_failures_in_a_row_stop_warming_with_failures(chat, monkeypatch, caplog):
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
    assert f"warming of chat {chat.id} stopped: failures" in [r.getMessage() for r in caplog.records]


def test_two_misses_within_the_cache_ttl_stop_warming_but_the_first_warm_after_enabling_is_no_miss(chat, settings):
    settings.MOTHERSHIP_LOCAL_CACHE_MIN_TOKENS = 10_000  # this prefix is below the provider's minimum
    warming_update(chat=chat, enabled=True)
    _talk(chat)  # a turn within the cache TTL before the first warm: a miss then is still not counted
    _due(chat)
    outcomes = []
    for _ in range(3):
        _warm(chat)
        schedule = WarmingSchedule.objects.get(chat=chat)
        outcomes.append((schedule.enabled, schedule.stop_reason))
    assert outcomes == [(True, ""), (True, ""), (False, "cache_miss")]
    assert schedule.last_cache_pct == 0.0 and schedule.cache_retention == 0.0
    assert (schedule.miss_count, schedule.hit_count, schedule.warm_count) == (3, 0, 3)
    # Below the cacheable minimum every token is plain input: priced as such (default prices).
    assert schedule.last_warm_cost == pytest.approx((schedule.prefix_tokens * 3.0 + 15.0) / 1e6)


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
