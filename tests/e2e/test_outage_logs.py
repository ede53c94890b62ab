"""What an operator reads during an expected outage: one line each, with the reason, never a traceback.

A real worker and beat on a Redis of their own, which is killed for a few seconds and started again.
"""

from __future__ import annotations

import time

import pytest

from tests.support import processes
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_a_redis_outage_is_one_line_each_in_the_worker_and_beat(tmp_path):
    from streams.models import Stream
    from tests import factories

    factories.StreamFactory(status=Stream.Status.QUEUED)  # the queue keeper has a turn to keep alive
    redis = PrivateRedis()
    env = {
        "REDIS_URL": redis.url,
        "MOTHERSHIP_STREAM_HEARTBEAT": 0.5,  # the queue keeper tries twice a second
        "MOTHERSHIP_WARMING_TICK": 0.2,  # beat has a task due every 0.2 s
        "MOTHERSHIP_HEARTBEAT_FILE": str(tmp_path / "worker.alive"),
    }
    worker = processes.start_worker_on_own_queue(tmp_path, name="outage-logs", queues="turns", **env)
    beat = processes.start_beat(tmp_path, **{**env, "MOTHERSHIP_HEARTBEAT_FILE": str(tmp_path / "beat.alive")})
    try:
        wait_for(lambda: "Starting..." in beat.output(), 30, "beat to start")
        time.sleep(1)
        redis.stop()
        wait_for(lambda: "the broker is unavailable" in beat.output(), 10, "beat to see the broker gone")
        wait_for(lambda: "could not renew the locks of queued turns" in worker.output(), 10, "the queue keeper to see it")
        time.sleep(2)  # a dozen due tasks and four keeper beats meanwhile
        redis.start()
        wait_for(lambda: "the broker answers again" in beat.output(), 15, "beat to see the broker back")
        wait_for(lambda: "renewing the locks of queued turns again" in worker.output(), 15, "the keeper to see it back")
        # Both beat their heartbeat files throughout (a thread of their own: an outage is no hang).
        for name in ("worker.alive", "beat.alive"):
            assert time.time() - (tmp_path / name).stat().st_mtime < 3
    finally:
        beat.stop()
        worker.stop()
        redis.close()
    worker_log, beat_log = (proc.log_path.read_text(errors="replace") for proc in (worker, beat))
    for text in (worker_log, beat_log):
        assert "Traceback" not in text, text[-3000:]
        assert "CPendingDeprecationWarning" not in text
    assert beat_log.count("the broker is unavailable") == 1
    assert worker_log.count("could not renew the locks of queued turns") == 1
    assert "Sending due task" not in beat_log  # not a line a second at info level
