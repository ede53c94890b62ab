"""A worker's key goes with a restarted Redis, but the worker lives on: the sweeper must not take
its turns for lost before it had the time to write its key again (``streams.workers``)."""

from __future__ import annotations

import time

import pytest
import redis

from chats.models import Message
from streams import workers
from streams.models import Stream
from streams.providers.local import LocalProvider
from streams.services import stream_start, streams_sweep
from tests.e2e.test_redis_restart import _enqueue, _private_redis, _sealed
from tests.support import processes
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TOKENS = 300  # at 20 tokens/s: a 15 s reply, in flight through the restart

# (worker heartbeat: its key lives three of them; Redis' data; seconds Redis stays away)
CASES = {
    # Every key is gone; the turn takes its lock again and names its worker at its next beat
    # (0.5 s), seconds before the worker writes its own key again (every 5 s). (Away for a second:
    # a Redis back before the turn's next append fails would fence the turn, a fault of its own.)
    "restarted empty": (5, False, 1),
    # The worker's key expired while Redis was away (4 s, its TTL 3 s); the lock (TTL 10 s) did not.
    "data kept, away longer than a worker TTL": (1, True, 4),
}


def _worker_on(server, tmp_path, *, beat: float):
    """A worker on ``server`` beating every ``beat`` s, its turns' locks every 0.5 s (TTL 10 s)."""
    worker = processes.start_worker_on_own_queue(
        tmp_path,
        name="liveness",
        queues="turns",
        REDIS_URL=server.url,
        MOTHERSHIP_WORKER_HEARTBEAT=beat,
        MOTHERSHIP_STREAM_HEARTBEAT=0.5,
        MOTHERSHIP_STREAM_LOCK_TTL=10,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=20,
        MOTHERSHIP_LOCAL_REPLY_TOKENS=TOKENS,
    )
    server.queue = worker.queue
    return worker


def _turn_on_its_worker(server, chat):
    """A turn the worker has claimed (its stream key names the worker); (the turn, a Redis client)."""
    turn = stream_start(chat=chat, content="keep going")
    _enqueue(server, str(turn.stream.id))
    client = redis.Redis.from_url(server.url)
    wait_for(lambda: client.get(f"mothership:stream-worker:{turn.stream.id}"), 20, "the turn to name its worker")
    return turn, client


@pytest.mark.parametrize("case", CASES)
def test_a_live_worker_keeps_its_turn_through_a_redis_restart(case, settings, tmp_path, turns_not_enqueued, chat):
    beat, persist, away = CASES[case]
    settings.MOTHERSHIP_WORKER_HEARTBEAT = beat  # the sweeper (this process) judges with the worker's TTL
    with _private_redis(settings, persist=persist) as server:
        worker = _worker_on(server, tmp_path, beat=beat)
        try:
            turn, client = _turn_on_its_worker(server, chat)
            (boot_key,) = client.keys(workers.worker_key("boot", "*"))
            # Right after the worker's beat: its next one is a whole beat away.
            wait_for(lambda: client.pttl(boot_key) > beat * 3000 - 300, 2 * beat + 1, "the worker's next beat", every=0.01)
            time.sleep(1.2 if persist else 0)  # (what the append-only file holds is at most a second old)

            server.stop()
            time.sleep(away)
            server.start()

            # The sweeper runs every 0.3 s meanwhile (the app's runs every MOTHERSHIP_SWEEP_INTERVAL).
            swept = []
            while _sealed(str(turn.stream.id)) is None:
                try:
                    swept.append(streams_sweep())
                except redis.RedisError:
                    pass
                time.sleep(0.3)
                assert len(swept) < 100, worker.output()[-3000:]

            stream = _sealed(str(turn.stream.id))
            message = Message.objects.get(pk=stream.assistant_message_id)
            reply = "".join(
                LocalProvider(tokens_per_second=0, reply_tokens=TOKENS).reply_for([{"role": "user", "content": "keep going"}])
            )
            assert (stream.status, stream.reason) == (Stream.Status.COMPLETED, ""), worker.output()[-3000:]
            assert message.content == reply
            assert not any(report["interrupted"] for report in swept)
        finally:
            worker.stop()


@pytest.mark.parametrize("code", ["NOREPLICAS"])  # (READONLY and MISCONF: test_redis_restart.py, without a sweeper)
def test_a_live_worker_keeps_its_turn_through_a_write_refusal_longer_than_its_key_lives(
    code, settings, tmp_path, turns_not_enqueued, chat
):
    """Redis refuses writes for 4 s: the worker's key (TTL 1.5 s) expires meanwhile, since the
    worker cannot write it. The sweeper, every 0.3 s throughout, must not take it for gone: it
    skips while writes are refused, and a key missing once is only a suspicion, confirmed a worker
    TTL later (by then a live worker has written it again). It used to seal the turn `worker_lost`."""
    settings.MOTHERSHIP_WORKER_HEARTBEAT = 0.5
    with _private_redis(settings, persist=False) as server:
        worker = _worker_on(server, tmp_path, beat=0.5)
        try:
            turn, _ = _turn_on_its_worker(server, chat)
            swept = []

            def sweep():
                try:
                    swept.append(streams_sweep())
                except redis.RedisError:
                    pass

            server.refuse_writes(code)
            refused_until = time.monotonic() + 4
            while time.monotonic() < refused_until:
                sweep()
                time.sleep(0.3)
            server.accept_writes()
            while _sealed(str(turn.stream.id)) is None:
                sweep()
                time.sleep(0.3)
                assert len(swept) < 150, worker.output()[-3000:]

            stream = _sealed(str(turn.stream.id))
            assert (stream.status, stream.reason) == (Stream.Status.COMPLETED, ""), worker.output()[-3000:]
            assert not any(report["interrupted"] for report in swept)
        finally:
            worker.stop()
