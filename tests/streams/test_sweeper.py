"""The sweeper finalizes orphans for good, keeping every produced token (seeds/sim-…)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.core.management import call_command

from chats.models import Chat, Message
from mothership.infra.redis import get_redis, redis_uptime, reset_clients
from spend.models import Charge
from streams import eventlog, events, locks, workers
from streams.models import Stream
from streams.services import stream_answer_again, stream_cancel, stream_start, streams_sweep, streams_sweep_lost_workers
from streams.services.sweep import stream_requeue
from tests import factories
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_worker(turns_not_enqueued):
    return turns_not_enqueued


def _orphan_mid_stream(chat, texts, start=None):
    """A turn (``start``: a Continue, say) whose worker published some deltas and then died (its lock expired)."""
    turn = start() if start else stream_start(chat=chat, content="hi")
    Stream.objects.filter(pk=turn.stream.pk).update(status="streaming")
    eventlog.append(
        chat_id=chat.id,
        stream_id=turn.stream.id,
        event=events.stream_event(type=events.STARTED, chat_id=chat.id, stream_id=turn.stream.id, seq=1),
    )
    for i, text in enumerate(texts, start=2):
        eventlog.append(
            chat_id=chat.id,
            stream_id=turn.stream.id,
            event=events.stream_event(type=events.DELTA, chat_id=chat.id, stream_id=turn.stream.id, seq=i, text=text),
        )
    get_redis().delete(locks.lock_key(chat.id))
    return turn


def test_an_orphan_is_interrupted_with_its_text_salvaged_and_a_terminal_event(chat, django_capture_on_commit_callbacks):
    turn = _orphan_mid_stream(chat, ["Hel", "lo", " there"])
    chat.refresh_from_db()
    updated_at = chat.updated_at
    with django_capture_on_commit_callbacks(execute=True):  # the seal is announced (terminal event) after commit
        report = streams_sweep()
    assert report["interrupted"] == [str(turn.stream.id)]

    stream = Stream.objects.get(pk=turn.stream.pk)
    assert (stream.status, stream.reason, stream.last_seq) == ("interrupted", "worker_lost", 5)
    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert (message.content, message.status) == ("Hello there", "interrupted")
    log = eventlog.read(turn.stream.id)
    assert log[-1]["type"] == events.INTERRUPTED and log[-1]["seq"] == 5 and log[-1]["partial"] is True
    chat.refresh_from_db()
    assert chat.active_stream_id is None and chat.updated_at == updated_at
    assert streams_sweep()["interrupted"] == []  # for good: a second sweep changes nothing
    assert [e["type"] for e in eventlog.read(turn.stream.id)].count(events.INTERRUPTED) == 1


def test_an_orphaned_continue_is_charged_an_input_estimate_with_its_kept_text(chat, django_capture_on_commit_callbacks):
    """The kept text goes to the model as the start of its reply: billed input. Before, the salvage's
    estimate left it out."""
    stopped = stream_start(chat=chat, content="tell me everything")
    with django_capture_on_commit_callbacks(execute=True):  # the stop's seal frees the lock after commit
        stream_cancel(chat=chat, stream_id=stopped.stream.id, reason="user")
    kept = "The first half, kept."
    Message.objects.filter(pk=stopped.assistant_message.pk).update(content=kept)
    turn = _orphan_mid_stream(
        chat, [" And", " more"], lambda: stream_answer_again(chat=chat, message_id=stopped.assistant_message.pk, continues=True)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert streams_sweep()["interrupted"] == [str(turn.stream.id)]
    charge = Charge.objects.get(pk=turn.stream.pk)
    question = 5 + 4  # "tell me everything": 18 characters (5 tokens), one message (4)
    assert charge.estimated and charge.input_tokens == question + -(-len(kept) // 4) + 4
    assert Message.objects.get(pk=turn.assistant_message.pk).content == kept + " And more"


def test_a_queued_stream_whose_lock_expired_is_never_started(chat):
    turn = stream_start(chat=chat, content="hi")
    get_redis().delete(locks.lock_key(chat.id))
    streams_sweep()
    stream = Stream.objects.get(pk=turn.stream.pk)
    assert (stream.status, stream.reason) == ("interrupted", "never_started")


def test_live_streams_are_left_alone(chat):
    turn = stream_start(chat=chat, content="hi")
    report = streams_sweep()
    assert report["alive"] == 1 and report["interrupted"] == []
    assert Stream.objects.get(pk=turn.stream.pk).status == "queued"
    assert Chat.objects.get(pk=chat.pk).active_stream_id == turn.stream.id


def test_a_streaming_turn_whose_lock_is_held_is_left_alone_beside_an_orphan_in_the_same_batch(chat, workspace):
    # Given: two turns mid-reply; one worker still holds its lock, the other's lock expired.
    alive = _orphan_mid_stream(chat, ["still", " going"])
    locks.lock_acquire(chat_id=chat.id, stream_id=alive.stream.id)  # its worker's heartbeat renewed it
    orphan = _orphan_mid_stream(factories.ChatFactory(workspace=workspace), ["lost"])

    # When: the sweeper runs (one batch holds both).
    report = streams_sweep()

    # Then: only the orphan is sealed; the live turn keeps streaming, its marker, lock and log untouched.
    assert report["interrupted"] == [str(orphan.stream.id)] and report["alive"] == 1
    live = Stream.objects.get(pk=alive.stream.pk)
    assert (live.status, live.finished_at, live.last_seq) == ("streaming", None, 0)
    assert Message.objects.get(pk=alive.assistant_message.pk).status == "partial"
    assert Chat.objects.get(pk=chat.pk).active_stream_id == alive.stream.id
    assert locks.lock_owner(chat_id=chat.id) == str(alive.stream.id)
    assert [e["type"] for e in eventlog.read(alive.stream.id)][-1] == events.DELTA  # no terminal event
    assert Stream.objects.get(pk=orphan.stream.pk).status == "interrupted"


def test_reconcile_streams_command_reports_as_json(chat, capsys):
    turn = _orphan_mid_stream(chat, ["x"])
    call_command("reconcile_streams", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["interrupted"] == [str(turn.stream.id)]


def test_reconcile_streams_command_refuses_bad_ids():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Not stream ids"):
        call_command("reconcile_streams", "nope")


@pytest.fixture
def redis_restarted_empty(settings):
    """The app's Redis, just restarted with nothing in it (a private one, started now)."""
    from mothership.infra import redis as redis_client
    from tests.support.redis_server import PrivateRedis

    def restart():
        server = PrivateRedis()
        settings.REDIS_URL = server.url
        redis_client.reset_clients()
        servers.append(server)

    servers: list = []
    yield restart
    for server in servers:
        server.close()
    redis_client.reset_clients()


def test_after_a_redis_restart_a_turn_without_its_lock_is_left_to_its_worker_for_one_ttl(
    chat, workspace, settings, redis_restarted_empty, no_worker
):
    """A restarted Redis lost every lock: a live worker takes its lock again, a queued turn lost its task."""
    import time

    settings.MOTHERSHIP_STREAM_LOCK_TTL = 4
    settings.MOTHERSHIP_STREAM_HEARTBEAT = 1
    streaming = _orphan_mid_stream(chat, ["Hel", "lo"])
    queued = stream_start(chat=factories.ChatFactory(workspace=workspace), content="waiting")
    no_worker.clear()
    time.sleep(1.1)  # both were created before Redis (re)started
    redis_restarted_empty()

    report = streams_sweep()
    assert report["interrupted"] == [] and report["waiting"] == 2
    assert report["requeued"] == [str(queued.stream.id)] and no_worker == [str(queued.stream.id)]
    assert locks.lock_owner(chat_id=queued.stream.chat_id) == str(queued.stream.id)  # the keeper renews it from here
    assert Stream.objects.get(pk=streaming.stream.pk).status == "streaming"

    # A turn started since the restart took its lock in this Redis: without it, it is swept at once.
    time.sleep(1.1)  # (Redis counts its uptime in whole seconds)
    fresh = stream_start(chat=factories.ChatFactory(workspace=workspace), content="new")
    get_redis().delete(locks.lock_key(fresh.stream.chat_id))
    assert streams_sweep()["interrupted"] == [str(fresh.stream.id)]

    # One TTL after the restart, a turn whose worker never came back is swept as usual.
    # (and so is the queued one here: no worker's keeper renewed the lock it was given)
    wait_for(lambda: redis_uptime() >= 4, 5, "one TTL of uptime")
    get_redis().delete(locks.lock_key(queued.stream.chat_id))  # as if its lock had expired
    assert set(streams_sweep()["interrupted"]) == {str(streaming.stream.id), str(queued.stream.id)}
    assert Stream.objects.get(pk=streaming.stream.pk).reason == "worker_lost"


def test_a_sweep_of_named_streams_seals_only_those_and_leaves_other_orphans_alone(chat, workspace):
    # Given: two orphans mid-reply (the admin action or `reconcile_streams <id>` names one).
    named = _orphan_mid_stream(chat, ["named"])
    other = _orphan_mid_stream(factories.ChatFactory(workspace=workspace), ["other"])

    # When: the sweep is told to look at the named one only.
    report = streams_sweep(stream_ids=[named.stream.id])

    # Then: only it is checked and sealed; the other waits for a full sweep.
    assert report == {
        "checked": 1,
        "alive": 0,
        "interrupted": [str(named.stream.id)],
        "already_finalized": 0,
        "waiting": 0,
        "requeued": [],
        "markers_cleared": 0,
    }
    assert Stream.objects.get(pk=named.stream.pk).status == "interrupted"
    assert Stream.objects.get(pk=other.stream.pk).status == "streaming"
    assert Chat.objects.get(pk=other.stream.chat_id).active_stream_id == other.stream.id


def test_a_sweep_reports_what_it_checked_kept_sealed_and_cleared(chat, workspace):
    # Given: two turns whose workers hold their locks, one orphan, and a chat whose marker
    # points at a turn that is no longer live and holds no lock.
    alive = [stream_start(chat=factories.ChatFactory(workspace=workspace), content="hi") for _ in range(2)]
    orphan = _orphan_mid_stream(chat, ["lost"])
    stale = factories.ChatFactory(workspace=workspace)
    Chat.objects.filter(pk=stale.pk).update(active_stream_id=uuid.uuid4())

    # When
    report = streams_sweep()

    # Then: every field says what happened.
    assert report == {
        "checked": 3,
        "alive": 2,
        "interrupted": [str(orphan.stream.id)],
        "already_finalized": 0,
        "waiting": 0,
        "requeued": [],
        "markers_cleared": 1,
    }
    assert Chat.objects.get(pk=stale.pk).active_stream_id is None
    assert all(Stream.objects.get(pk=t.stream.pk).status == "queued" for t in alive)


def test_a_stale_marker_is_kept_while_its_chat_lock_is_held(chat):
    """The lock is the truth for a turn in flight: its row may not be visible to the sweeper yet."""
    marker = uuid.uuid4()
    Chat.objects.filter(pk=chat.pk).update(active_stream_id=marker)
    locks.lock_acquire(chat_id=chat.id, stream_id=marker)

    assert streams_sweep()["markers_cleared"] == 0
    assert Chat.objects.get(pk=chat.pk).active_stream_id == marker

    locks.lock_release(chat_id=chat.id, stream_id=marker)
    assert streams_sweep()["markers_cleared"] == 1
    assert Chat.objects.get(pk=chat.pk).active_stream_id is None


def test_a_requeue_that_loses_the_chat_to_another_turn_says_so_and_enqueues_nothing(chat, no_worker):
    # Given: a queued turn whose lock a restarted Redis lost, and another turn that takes the chat first.
    queued = stream_start(chat=chat, content="waiting")
    no_worker.clear()
    get_redis().delete(locks.lock_key(chat.id))
    newer = uuid.uuid4()
    locks.lock_acquire(chat_id=chat.id, stream_id=newer)

    # When / Then: the sweeper does not count it as requeued, enqueues nothing, and leaves the lock alone.
    assert stream_requeue(stream=queued.stream) is False
    assert no_worker == []
    assert locks.lock_owner(chat_id=chat.id) == str(newer)


def test_a_sweep_walks_every_batch_and_ends(workspace, monkeypatch):
    # Given: five live turns, orphans between turns whose workers hold their locks, two to a batch.
    monkeypatch.setattr("streams.services.sweep.SWEEP_BATCH", 2)
    turns = []
    for orphaned in (False, True, False, True, False):
        chat = factories.ChatFactory(workspace=workspace)
        turns.append((_orphan_mid_stream(chat, ["x"]) if orphaned else stream_start(chat=chat, content="hi"), orphaned))

    report = streams_sweep()

    assert (report["checked"], report["alive"]) == (5, 3)
    assert report["interrupted"] == [str(turn.stream.id) for turn, orphaned in turns if orphaned]


def test_turns_created_in_the_same_instant_are_all_swept_across_a_batch_edge(workspace, monkeypatch):
    # Given: three orphans created in the same instant, two to a batch.
    monkeypatch.setattr("streams.services.sweep.SWEEP_BATCH", 2)
    turns = [_orphan_mid_stream(factories.ChatFactory(workspace=workspace), ["x"]) for _ in range(3)]
    Stream.objects.filter(pk__in=[t.stream.pk for t in turns]).update(created_at=turns[0].stream.created_at)

    # When
    report = streams_sweep()

    # Then: the batch after the first starts after its last row, not after its instant.
    assert report["checked"] == 3
    assert sorted(report["interrupted"]) == sorted(str(t.stream.id) for t in turns)


# --- a lock whose worker no longer exists (streams.workers) -----------------------------------


def _worker(slot: str = "mothership-8000-1@host") -> workers.Worker:
    return workers.Worker.new_boot(f"{slot}-{uuid.uuid4().hex[:6]}")


def _running_on_a_worker(chat, texts=("Hel", "lo")):
    """A turn mid-reply that a beating worker claimed: its lock held and naming that worker."""
    worker = _worker()
    workers.worker_beat(worker)
    turn = _orphan_mid_stream(chat, list(texts))
    assert locks.lock_acquire(chat_id=chat.id, stream_id=turn.stream.id)
    assert locks.lock_heartbeat(chat_id=chat.id, stream_id=turn.stream.id, worker=worker.tag)
    return turn, worker


def _start_again(worker: workers.Worker) -> None:
    """The same worker (its slot) starts again: a new boot."""
    workers.worker_beat(workers.Worker.new_boot(worker.slot))


@pytest.fixture
def redis_up_for(monkeypatch):
    """Redis' uptime as the sweeper sees it."""

    def set_uptime(seconds: int) -> None:
        monkeypatch.setattr("streams.services.sweep.redis_uptime", lambda: seconds)

    return set_uptime


def test_a_turn_whose_worker_started_again_is_sealed_at_once_though_its_lock_holds(
    chat, redis_up_for, django_capture_on_commit_callbacks
):
    # Given: a turn whose lock is held and names its worker's boot; the same worker (slot) starts
    # again, with Redis just restarted from its file (the whole app was killed).
    turn, worker = _running_on_a_worker(chat, ["Hel", "lo", " there"])
    redis_up_for(0)
    assert streams_sweep()["alive"] == 1  # its boot still beats: alive
    _start_again(worker)

    # When
    with django_capture_on_commit_callbacks(execute=True):
        report = streams_sweep_lost_workers()

    # Then: sealed worker_lost with its text, its lock freed, its chat no longer streaming.
    assert report["interrupted"] == [str(turn.stream.id)]
    stream = Stream.objects.get(pk=turn.stream.pk)
    assert (stream.status, stream.reason) == ("interrupted", "worker_lost")
    assert Message.objects.get(pk=turn.assistant_message.pk).content == "Hello there"
    assert locks.lock_owner(chat_id=chat.id) is None
    assert Chat.objects.get(pk=chat.pk).active_stream_id is None
    assert eventlog.read(turn.stream.id)[-1]["type"] == events.INTERRUPTED


def test_a_turn_whose_worker_stopped_beating_is_sealed_once_redis_has_been_up_for_a_worker_ttl(chat, settings, redis_up_for):
    # Given: a turn whose worker's key expired (its process is gone), its lock still held.
    settings.MOTHERSHIP_WORKER_HEARTBEAT = 0.1  # a worker TTL of 0.3 s
    turn, gone = _running_on_a_worker(chat)
    get_redis().delete(workers.worker_key("boot", gone.boot))

    # When Redis started less than a worker TTL ago, a live worker may not have beaten yet: alive.
    redis_up_for(0)
    assert streams_sweep()["alive"] == 1
    time.sleep(0.35)
    assert streams_sweep()["alive"] == 1
    assert Stream.objects.get(pk=turn.stream.pk).status == "streaming"

    # Once it has been up that long, a key found gone is a suspicion (a live worker that could not
    # write it while Redis refused writes writes it again within a beat)...
    redis_up_for(60)
    assert streams_sweep()["alive"] == 1
    # ...confirmed when it is still gone a worker TTL later: sealed.
    time.sleep(0.35)
    assert streams_sweep()["interrupted"] == [str(turn.stream.id)]
    assert Stream.objects.get(pk=turn.stream.pk).reason == "worker_lost"


def test_nothing_is_swept_while_redis_refuses_writes(chat, settings, redis_up_for):
    """A Redis that refuses writes shows locks and worker keys that expired only because their
    live owners could not write them: the sweep waits (one line), and seals nothing."""
    from tests.support.redis_server import PrivateRedis

    settings.MOTHERSHIP_WORKER_HEARTBEAT = 0.1
    server = PrivateRedis()
    settings.REDIS_URL = server.url
    reset_clients()
    try:
        turn, gone = _running_on_a_worker(chat)
        get_redis().delete(workers.worker_key("boot", gone.boot), locks.lock_key(chat.id))
        redis_up_for(60)
        server.refuse_writes("NOREPLICAS")
        for _ in range(3):
            report = streams_sweep()
            assert "NOREPLICAS" in report["skipped"] and report["interrupted"] == []
            time.sleep(0.35)
        assert Stream.objects.get(pk=turn.stream.pk).status == "streaming"
        server.accept_writes()
        assert streams_sweep()["interrupted"] == [str(turn.stream.id)]  # its lock is gone: an orphan
    finally:
        server.close()
        reset_clients()


def test_a_turn_whose_worker_beats_is_left_alone_and_a_queued_turn_never_sealed_by_this_rule(chat, workspace, redis_up_for):
    # Given: a turn whose worker beats; a queued turn (no worker claimed it) whose lock holds and
    # whose stream key names a lost worker (a claim that lost the race to a second delivery).
    redis_up_for(3600)
    turn, _ = _running_on_a_worker(chat)
    queued = stream_start(chat=factories.ChatFactory(workspace=workspace), content="waiting")
    lost = _worker()
    get_redis().set(locks.worker_key(queued.stream.id), lost.tag)

    # When / Then
    assert streams_sweep()["alive"] == 2
    assert streams_sweep_lost_workers()["interrupted"] == []
    assert Stream.objects.get(pk=turn.stream.pk).status == "streaming"
    assert Stream.objects.get(pk=queued.stream.pk).status == "queued"


def test_the_sweep_of_a_starting_worker_seals_only_turns_of_lost_workers(chat, workspace, redis_up_for):
    # Given: a turn of a restarted worker, and an orphan whose lock is gone (the beat's sweep's).
    redis_up_for(3600)
    lost, worker = _running_on_a_worker(chat)
    _start_again(worker)
    orphan = _orphan_mid_stream(factories.ChatFactory(workspace=workspace), ["x"])

    report = streams_sweep_lost_workers()

    assert report["interrupted"] == [str(lost.stream.id)]
    assert Stream.objects.get(pk=orphan.stream.pk).status == "streaming"
    assert streams_sweep()["interrupted"] == [str(orphan.stream.id)]


def test_a_turn_that_names_no_worker_is_judged_by_its_lock_alone(chat, redis_up_for):
    """A turn run by a process that is no registered worker (an older worker, a test) names none."""
    redis_up_for(3600)
    turn = _orphan_mid_stream(chat, ["x"])
    assert locks.lock_acquire(chat_id=chat.id, stream_id=turn.stream.id)

    assert streams_sweep()["alive"] == 1
    assert Stream.objects.get(pk=turn.stream.pk).status == "streaming"
