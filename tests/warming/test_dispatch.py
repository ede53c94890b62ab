"""The warming engine against the real database and Redis: claims, warms, stats, stop rules."""

from __future__ import annotations

import datetime
import functools
import threading
import time

import pytest
from channels.layers import get_channel_layer
from channels.testing.websocket import WebsocketCommunicator
from django.db import connection, transaction
from django.utils import timezone

from chats.models import Message
from chats.selectors import conversation_prefix
from chats.services import chat_create, chat_set_system_prompt
from mothership.consumers import MothershipConsumer
from mothership.infra import groups
from mothership.infra.redis import get_redis
from mothership.services import chat_close
from streams.providers import ProviderError, Usage
from streams.providers.base import warm_each
from streams.providers.local import LocalProvider
from streams.services import stream_run, stream_start
from warming import dispatch
from warming.models import WarmingSchedule
from warming.services import UPDATE_MESSAGE_TYPE, warming_fields, warming_update

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


def _claimed_batch() -> tuple[list[str], str]:
    """Every due schedule claimed by one dispatch, as the one Celery message would carry them."""
    sent = []
    dispatch.warming_dispatch_due(enqueue=lambda ids, token: sent.append((ids, token)))
    ((ids, token),) = sent
    return ids, token


def _model_warms_each(monkeypatch, warm) -> None:
    """The local model warms a batch one prefix at a time through ``warm(provider, messages=…)``: the model API's edge."""
    monkeypatch.setattr(LocalProvider, "warm_many", lambda self, *, prefixes: warm_each(functools.partial(warm, self), prefixes))


def _model_refuses(monkeypatch, chat) -> None:
    """The model warms every prefix but ``chat``'s, which it refuses as overloaded."""
    refused, original = conversation_prefix(chat_id=chat.id), LocalProvider.warm

    def warm(self, *, messages):
        if messages == refused:
            raise ProviderError("overloaded")
        return original(self, messages=messages)

    _model_warms_each(monkeypatch, warm)


def _tokens(chat) -> int:
    return sum(len(m["content"].split()) for m in conversation_prefix(chat_id=chat.id))


class _Pushes:
    """What reaches the ``cache-warming`` surfaces of ``chats`` and their workspace's dashboards (real Redis pub/sub)."""

    def __init__(self, workspace, chats):
        self.pubsub = get_redis().pubsub()
        channels = [groups.group_channel(groups.workspace_group(workspace.id))]
        channels += [groups.group_channel(groups.warming_group(c.id)) for c in chats]
        self.pubsub.subscribe(*channels)
        confirmed = 0
        while confirmed < len(channels):  # subscribed on the server before anything is published
            message = self.pubsub.get_message(timeout=5)
            assert message is not None, "the subscriptions were not confirmed"
            confirmed += message["type"] == "subscribe"

    def received(self, wait: float = 0.3) -> list[dict]:
        messages, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message and message["type"] == "message":
                messages.append(get_channel_layer().deserialize(message["data"]))
        return messages

    def close(self) -> None:
        self.pubsub.close()


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
    original = LocalProvider.warm_many
    monkeypatch.setattr(
        LocalProvider, "warm_many", lambda self, *, prefixes: calls.extend(prefixes) or original(self, prefixes=prefixes)
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

    outcomes = {r.chat_id: r for r in dispatch.warm_batch_run(chat_ids=ids, token=token)}

    assert outcomes == {
        str(voided.id): dispatch.WarmResult(str(voided.id), "superseded"),
        str(streaming.id): dispatch.WarmResult(str(streaming.id), "skipped_streaming"),
        str(fine.id): dispatch.WarmResult(str(fine.id), "warmed"),
    }
    assert model_calls == [conversation_prefix(chat_id=fine.id)]
    assert WarmingSchedule.objects.get(chat=streaming).claim_token == ""  # given back: the seal reschedules it
    assert warm_batch(ids, token) == {"superseded": 3}  # a redelivered message warms nothing twice


def test_a_batch_warms_each_chat_with_its_system_prompt_and_hits_what_its_turn_wrote(workspace, monkeypatch):
    prompted, plain = (chat_create(workspace=workspace, title=t) for t in ("prompted", "plain"))
    chat_set_system_prompt(chat=prompted, system_prompt="Answer in one line")
    for chat in (prompted, plain):
        _talk(chat)
        _due(chat)
    sent = []
    original = LocalProvider.warm_many
    monkeypatch.setattr(
        LocalProvider, "warm_many", lambda self, *, prefixes: sent.extend(prefixes) or original(self, prefixes=prefixes)
    )
    ids, token = _claimed_batch()
    assert dispatch.warm_batch_run(chat_ids=ids, token=token)
    assert {"role": "system", "content": "Answer in one line"} in [m for prefix in sent for m in prefix]
    assert sorted(sent, key=len) == sorted([conversation_prefix(chat_id=c.id) for c in (prompted, plain)], key=len)
    for chat in (prompted, plain):  # each read the whole prefix its turn wrote
        schedule = WarmingSchedule.objects.get(chat=chat)
        assert (schedule.warm_count, schedule.hit_count, schedule.last_cache_pct) == (1, 1, 100.0), chat.title


def test_a_batch_costs_the_same_few_queries_and_redis_round_trips_for_2_or_20_warms(
    workspace, django_assert_max_num_queries, redis_round_trips
):
    from warming.tasks import warm_batch

    measured = {}
    for n in (2, 20):
        # Given a batch of n due conversations, each with a cached prefix
        chats = [chat_create(workspace=workspace, title=f"{n}-{i}") for i in range(n)]
        for chat in chats:
            _talk(chat, f"question {chat.title}")
            _due(chat)
        ids, token = _claimed_batch()
        redis_round_trips.clear()

        # When the worker runs it: its claims, its prefixes and its workspaces' budgets read, one
        # MGET, the model, one transaction (BEGIN, the rows locked, one UPDATE, the charges: the
        # ids already charged, one INSERT in a savepoint, the month's total created in a savepoint,
        # COMMIT), and the pushes' one read
        with django_assert_max_num_queries(14) as queries:
            assert warm_batch(ids, token) == {"warmed": n}

        # Then its cost does not grow with its size
        measured[n] = (len(queries), len(redis_round_trips))
        assert WarmingSchedule.objects.filter(chat__in=chats, warm_count=1, claim_token="").count() == n
    assert measured[2] == measured[20]
    # the lock MGET, the local model's pipeline, the charges' settle pipeline, the pushes' pipeline
    assert measured[20][1] <= 4


@pytest.mark.postgres
def test_a_batch_records_every_result_in_one_transaction(workspace, monkeypatch):
    # Given a batch with a conversation to warm, one whose warm fails, one that streams and one without text
    warmed, failing, streaming, empty = chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(4)]
    for chat in chats[:3]:
        _talk(chat, f"question {chat.title}")
    for chat in chats:
        _due(chat)
    ids, token = _claimed_batch()
    stream_start(chat=streaming, content="busy")
    _model_refuses(monkeypatch, failing)
    transactions = []

    def note_the_transaction(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("UPDATE") and WarmingSchedule._meta.db_table in sql:
            with context["connection"].connection.cursor() as cursor:  # the same session, beside Django's cursor
                cursor.execute("SELECT txid_current_if_assigned()")
                transactions.append(cursor.fetchone()[0])
        return result

    # When the worker runs it
    with connection.execute_wrapper(note_the_transaction):
        results = dispatch.warm_batch_run(chat_ids=ids, token=token)

    # Then every write of the batch (the results and the claim given back) was one transaction
    assert sorted(r.outcome for r in results) == ["empty", "failed", "skipped_streaming", "warmed"]
    assert transactions and None not in transactions and len(set(transactions)) == 1
    assert set(WarmingSchedule.objects.filter(chat__in=chats).values_list("claim_token", flat=True)) == {""}


def test_every_outcome_of_a_batch_lands_on_its_own_row(workspace, monkeypatch):
    # Given one batch with a conversation of each kind, with prefixes and intervals of their own
    names = ("warmed", "failing", "streaming", "empty", "voided")
    chats = dict(zip(names, (chat_create(workspace=workspace, title=name) for name in names)))
    for i, name in enumerate(names):
        if name != "empty":
            _talk(chats[name], f"the question of the {name} conversation " * (i + 1))
        _due(chats[name], interval=60 + 10 * i)
    ids, token = _claimed_batch()
    dispatch.warming_on_turn_sealed(chat_id=chats["voided"].id, sealed_at=timezone.now())  # a turn voided its claim
    stream_start(chat=chats["streaming"], content="busy")
    before = {name: _schedule_row(chat) for name, chat in chats.items()}
    _model_refuses(monkeypatch, chats["failing"])

    # When the worker runs it
    started = timezone.now()
    outcomes = {r.chat_id: r.outcome for r in dispatch.warm_batch_run(chat_ids=ids, token=token)}

    # Then each conversation has its own outcome, on its own row
    assert outcomes == {
        str(chats["warmed"].id): "warmed",
        str(chats["failing"].id): "failed",
        str(chats["streaming"].id): "skipped_streaming",
        str(chats["empty"].id): "empty",
        str(chats["voided"].id): "superseded",
    }
    rows = {name: WarmingSchedule.objects.get(chat=chat) for name, chat in chats.items()}
    for name, row in rows.items():
        assert (row.claim_token, row.claimed_at) == ("", None), name  # every claim given back or voided
    warmed = rows["warmed"]
    assert (warmed.warm_count, warmed.hit_count, warmed.consecutive_failures) == (1, 1, 0)
    assert (warmed.prefix_tokens, warmed.last_cache_pct) == (_tokens(chats["warmed"]), 100.0)
    assert warmed.next_warm_at == warmed.last_warm_at + datetime.timedelta(seconds=60)
    failing = rows["failing"]
    assert (failing.warm_count, failing.consecutive_failures, failing.last_error, failing.last_warm_at) == (
        0,
        1,
        "overloaded",
        None,
    )
    assert started + datetime.timedelta(seconds=70) <= failing.next_warm_at <= timezone.now() + datetime.timedelta(seconds=70)
    empty = rows["empty"]
    assert (empty.warm_count, empty.last_error, empty.last_warm_at) == (0, "", None)
    assert started + datetime.timedelta(seconds=90) <= empty.next_warm_at <= timezone.now() + datetime.timedelta(seconds=90)
    streaming = _schedule_row(chats["streaming"])
    assert {k: v for k, v in streaming.items() if k not in ("claim_token", "claimed_at")} == {
        k: v for k, v in before["streaming"].items() if k not in ("claim_token", "claimed_at")
    }  # only its claim given back: the seal of its turn reschedules it
    assert _schedule_row(chats["voided"]) == before["voided"]


def test_a_batch_pushes_each_recorded_warm_to_its_surface_and_dashboards_only_after_its_commit(workspace):
    # Given a batch of two conversations to warm and one whose turn streams, with their tabs and dashboards listening
    chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(3)]
    for chat in chats:
        _talk(chat)
        _due(chat, interval=120)
    ids, token = _claimed_batch()
    stream_start(chat=chats[2], content="busy")
    pushes = _Pushes(workspace, chats)

    # When the batch is recorded inside a transaction that has not committed yet
    with transaction.atomic():
        dispatch.warm_batch_run(chat_ids=ids, token=token)
        before_commit = pushes.received()

    # Then nothing was pushed before the commit, and after it each warm's stored state
    pushed = pushes.received(wait=1.0)
    pushes.close()
    assert before_commit == []
    stored = {str(c.id): warming_fields(WarmingSchedule.objects.get(chat=c)) for c in chats[:2]}
    surfaces = {m["conversationId"]: m["fields"] for m in pushed if m["type"] == UPDATE_MESSAGE_TYPE}
    badges = {m["tile"]["conversationId"]: m["tile"] for m in pushed if m["type"] == "tile.update"}
    assert surfaces == stored and len(pushed) == 4  # none for the conversation that streams
    assert {cid: (b["type"], b["warming"]["nextWarmAt"]) for cid, b in badges.items()} == {
        cid: ("tile.warming", fields["timer"]["nextWarmAt"]) for cid, fields in stored.items()
    }
    for fields in stored.values():
        assert fields["timer"]["nextWarmAt"] == fields["timer"]["lastWarmAt"] + 120_000  # the future one (CR-4b)


def test_a_model_that_fails_a_whole_batch_fails_each_warm_and_logs_it_once(workspace, monkeypatch, caplog):
    chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(3)]
    for chat in chats:
        _talk(chat)
        _due(chat)
    ids, token = _claimed_batch()

    def broken(self, *, prefixes):
        raise RuntimeError("the pipeline broke")

    monkeypatch.setattr(LocalProvider, "warm_many", broken)  # the model API's edge

    assert {r.outcome for r in dispatch.warm_batch_run(chat_ids=ids, token=token)} == {"failed"}

    for schedule in WarmingSchedule.objects.filter(chat__in=chats):
        assert (schedule.consecutive_failures, schedule.last_error, schedule.enabled) == (
            1,
            dispatch.INTERNAL_FAILURE,
            True,
        )
        assert schedule.claim_token == "" and schedule.next_warm_at > timezone.now()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == ["warm of a batch of 3 conversations failed"]


def test_an_empty_conversation_is_not_sent_to_the_model_and_is_rescheduled(workspace, chat, model_calls):
    _due(chat, interval=60)
    pushes = _Pushes(workspace, [chat])

    assert _warm(chat) == dispatch.WarmResult(str(chat.id), "empty")

    pushed = pushes.received()
    pushes.close()
    assert model_calls == [] and [m["type"] for m in pushed] == ["warming.update", "tile.update"]
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

    _model_warms_each(monkeypatch, broken)

    assert _warm(chat) == dispatch.WarmResult(str(chat.id), "failed")

    schedule = WarmingSchedule.objects.get(chat=chat)
    # The user sees a fixed phrase; the exception (which may name internal hosts) goes to the log.
    assert schedule.last_error == dispatch.INTERNAL_FAILURE and "socket closed" not in schedule.last_error
    assert schedule.consecutive_failures == 1 and schedule.enabled
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [f"warm of chat {chat.id} failed"]
    assert "socket closed" in str(errors[0].exc_info[1])
    _model_warms_each(monkeypatch, lambda self, *, messages: (_ for _ in ()).throw(ProviderError("")))
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
    original = LocalProvider.warm_many
    _model_warms_each(monkeypatch, lambda self, *, messages: (_ for _ in ()).throw(ProviderError("overloaded")))
    assert _warm(chat).outcome == "failed"
    assert fields() == (1, 1, 0, 0, 1, "overloaded")
    monkeypatch.setattr(LocalProvider, "warm_many", original)
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
@pytest.mark.parametrize("batch", ["alone", "with another chat"])
def test_a_warm_whose_claim_was_voided_while_in_flight_records_nothing(workspace, chat, monkeypatch, meanwhile, batch):
    # Given a due schedule claimed for a warm (alone, or in one batch with another conversation),
    # and a model call of that batch during which its claim is voided
    _talk(chat)
    _due(chat, interval=60)
    if batch == "alone":
        token = dispatch.claim_one(chat_id=chat.id)
    else:
        bystander = chat_create(workspace=workspace, title="bystander")
        _talk(bystander, "a longer question from another conversation")
        _due(bystander, interval=90)
        ids, token = _claimed_batch()
    original, seen = LocalProvider.warm, {}

    def warm_while_voided(self, *, messages):
        usage = original(self, messages=messages)
        if "row" not in seen:  # during the batch's first model call, whichever prefix it is
            _voided_by(meanwhile, chat)
            seen["row"] = _schedule_row(chat)
        return usage

    _model_warms_each(monkeypatch, warm_while_voided)

    # When the warm (or the batch) lands
    if batch == "alone":
        outcomes = {str(chat.id): dispatch.warm_run(chat_id=chat.id, token=token).outcome}
    else:
        outcomes = {r.chat_id: r.outcome for r in dispatch.warm_batch_run(chat_ids=ids, token=token)}

    # Then it is superseded and the newer state of the schedule is left exactly as it was
    assert outcomes[str(chat.id)] == "superseded"
    assert seen["row"]["warm_count"] == 0
    assert _schedule_row(chat) == seen["row"]
    if batch != "alone":
        # And the other warm of the batch is recorded on its own row, with its own figures only
        assert outcomes[str(bystander.id)] == "warmed"
        other = WarmingSchedule.objects.get(chat=bystander)
        assert (other.warm_count, other.prefix_tokens, other.claim_token, other.claimed_at) == (1, _tokens(bystander), "", None)
        assert other.next_warm_at == other.last_warm_at + datetime.timedelta(seconds=90)


def test_no_warm_while_a_turn_streams_and_the_seal_reschedules_it(chat, model_calls):
    # Given a schedule claimed just before a turn started
    _talk(chat)
    _due(chat, interval=60)
    token = dispatch.claim_one(chat_id=chat.id)
    turn = stream_start(chat=chat, content="a turn that streams")
    calls = model_calls

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


def test_the_local_model_warms_a_whole_batch_in_one_redis_round_trip(settings, redis_round_trips):
    # Given a cached prefix whose entry is about to expire, one no longer cached, and one too short to cache
    settings.MOTHERSHIP_LOCAL_CACHE_MIN_TOKENS = 5
    provider = LocalProvider()
    cached = [{"role": "user", "content": "one two three"}, {"role": "assistant", "content": "four five six"}]
    expired = [{"role": "user", "content": "seven eight nine ten eleven"}]
    short = [{"role": "user", "content": "too short"}]
    provider._cache.write(cached)
    get_redis().pexpire(provider._cache.key(cached), 1000)
    get_redis().delete(provider._cache.key(expired))
    redis_round_trips.clear()

    # When the model warms them (the expired one twice) in one batch
    results = provider.warm_many(prefixes=[cached, expired, short, expired])

    # Then one round trip did it, and each reports what a warm of it alone reports
    assert len(redis_round_trips) == 1
    assert results == [
        Usage(cache_read_tokens=6, output_tokens=1),
        Usage(cache_write_tokens=5, output_tokens=1),
        Usage(input_tokens=2, output_tokens=1),  # below the minimum: never cached
        Usage(cache_read_tokens=5, output_tokens=1),  # written by the first of the two
    ]
    ttl = settings.MOTHERSHIP_PROMPT_CACHE_TTL * 1000
    assert ttl - 5000 < get_redis().pttl(provider._cache.key(cached)) <= ttl  # the read refreshed it
    assert ttl - 5000 < get_redis().pttl(provider._cache.key(expired)) <= ttl
    redis_round_trips.clear()
    assert provider.warm_many(prefixes=[short]) == [Usage(input_tokens=2, output_tokens=1)] and redis_round_trips == []
    assert provider.warm(messages=cached) == Usage(cache_read_tokens=6, output_tokens=1)  # one prefix: a batch of one


def test_three_failures_in_a_row_stop_warming_with_failures(chat, monkeypatch, caplog):
    _talk(chat)
    _due(chat)

    def broken(self, *, messages):
        raise ProviderError("overloaded")

    _model_warms_each(monkeypatch, broken)  # the model API's edge
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
