"""Turn workers name themselves in Redis, and each turn's lock names its worker (streams.workers)."""

from __future__ import annotations

import time
import uuid

import pytest

from mothership.infra.redis import get_redis
from streams import locks, workers
from streams.services import stream_run, stream_start

pytestmark = pytest.mark.django_db(transaction=True)


def _worker() -> workers.Worker:
    return workers.Worker.new_boot(f"mothership-8000-1@{uuid.uuid4().hex[:8]}")


def test_a_worker_tag_reads_back_and_anything_else_names_no_worker():
    worker = _worker()
    assert workers.Worker.of(worker.tag.encode()) == worker
    for bad in (None, b"", b"nope", f"{worker.boot}".encode(), f"{worker.boot} two words".encode(), b"XYZ slot@h"):
        assert workers.Worker.of(bad) is None


def test_a_beat_keeps_the_boot_key_for_three_beats_and_says_which_boot_held_the_slot(settings):
    settings.MOTHERSHIP_WORKER_HEARTBEAT = 2
    first = _worker()
    assert workers.worker_beat(first) is None
    assert workers.worker_beat(first) == first.boot
    assert 5000 < get_redis().pttl(workers.worker_key("boot", first.boot)) <= 6000
    again = workers.Worker.new_boot(first.slot)
    assert workers.worker_beat(again) == first.boot  # a new boot of the slot: the old one is lost
    assert get_redis().get(workers.worker_key("slot", first.slot)) == again.boot.encode()


def test_workers_lost_by_a_newer_boot_at_once_and_by_silence_only_after_a_worker_ttl(settings):
    settings.MOTHERSHIP_WORKER_HEARTBEAT = 0.1  # a worker TTL of 0.3 s
    beating, restarted, silent, back = _worker(), _worker(), _worker(), _worker()
    for worker in (beating, restarted, silent, back):
        workers.worker_beat(worker)
    workers.worker_beat(workers.Worker.new_boot(restarted.slot))
    get_redis().delete(workers.worker_key("boot", silent.boot), workers.worker_key("boot", back.boot))
    everyone = [beating, restarted, silent, back]

    # Within a worker TTL of a Redis start, silence proves nothing; a newer boot does.
    assert workers.workers_lost(everyone, redis_uptime=0) == {restarted}
    # Found silent once: a suspicion, noted.
    assert workers.workers_lost(everyone, redis_uptime=60) == {restarted}
    time.sleep(0.35)
    for live in (beating, back):  # as live workers do every beat; ``back`` could not write its key for a while
        workers.worker_beat(live)
    # Still silent a worker TTL later: gone. The one that beat again is not.
    assert workers.workers_lost(everyone, redis_uptime=60) == {restarted, silent}
    assert workers.workers_lost([], redis_uptime=60) == set()


def test_a_heartbeat_names_the_worker_beside_the_lock_only_while_the_stream_owns_it(settings):
    chat, owner, stranger, worker = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), _worker()
    assert locks.lock_acquire(chat_id=chat, stream_id=owner)

    assert not locks.lock_heartbeat(chat_id=chat, stream_id=stranger, worker=worker.tag)
    assert get_redis().get(locks.worker_key(stranger)) is None
    assert locks.lock_heartbeat(chat_id=chat, stream_id=owner, worker=worker.tag)
    assert get_redis().get(locks.worker_key(owner)) == worker.tag.encode()
    # It lasts as long as the lock (the heartbeat renews both).
    assert abs(get_redis().pttl(locks.worker_key(owner)) - get_redis().pttl(locks.lock_key(chat))) < 100
    owners, tags = locks.lock_owners_and_workers([(chat, owner)])
    assert owners == {str(chat): str(owner)} and workers.Worker.of(tags[str(owner)]) == worker


def test_a_turn_run_by_a_worker_names_it(chat, settings, monkeypatch, turns_not_enqueued):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 5
    worker = _worker()
    monkeypatch.setattr(workers, "_current", worker)
    turn = stream_start(chat=chat, content="hi")

    assert stream_run(stream_id=turn.stream.id) == "completed"

    assert get_redis().get(locks.worker_key(turn.stream.id)) == worker.tag.encode()  # written by the claim


def test_a_turns_heartbeat_names_its_worker_once_the_worker_has_registered(settings, monkeypatch):
    """A turn may be claimed before its worker registered (both follow the worker's start): each beat reads it again."""
    import threading

    from streams.services.turn import Heartbeat
    from tests.support.waiting import wait_for

    settings.MOTHERSHIP_STREAM_HEARTBEAT = 0.05
    chat, stream, worker = uuid.uuid4(), uuid.uuid4(), _worker()
    assert locks.lock_acquire(chat_id=chat, stream_id=stream)
    monkeypatch.setattr(workers, "_current", None)
    heartbeat = Heartbeat(chat_id=chat, stream_id=stream, stop=threading.Event(), fenced=threading.Event())
    heartbeat.start()
    try:
        wait_for(lambda: get_redis().pttl(locks.lock_key(chat)) > 0, 2, "a beat")
        assert get_redis().get(locks.worker_key(stream)) is None
        monkeypatch.setattr(workers, "_current", worker)
        wait_for(lambda: get_redis().get(locks.worker_key(stream)) == worker.tag.encode(), 2, "the worker named")
    finally:
        heartbeat.done.set()
        heartbeat.join()
