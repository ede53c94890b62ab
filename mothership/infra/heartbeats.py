"""Heartbeats of the Celery workers and of beat, in Redis, for ``/readyz`` (``mothership.infra.readiness``).

``mothership:heartbeat:workers:<queue>`` is a sorted set per Celery queue: each worker process
that consumes the queue is a member (its node name), scored with the time of its last beat, on
Redis' clock (hosts whose clocks disagree still agree on an age). A turn worker beats on the turn
queue, a background worker on ``<turn queue>.background`` (``mothership.celery.background_queue``).
``mothership:heartbeat:beat:<queue>`` holds the time of beat's last tick; beat sends its tasks to
that queue's deployment. Keyed by queue, so two deployments on one Redis (or a test run beside
``make run``) each see only their own processes.

One sorted set per queue rather than a key with a TTL per worker: ``/readyz`` reads the newest
beat in one command (no SCAN over the keyspace) and can say how long ago the last worker was seen.
A member not seen for ``KEEP_SECONDS`` is dropped at the next beat, and the keys expire then too.
``streams.workers``' boot keys are not reused: only turn workers write them, they are not per
queue, and finding any live one would take a SCAN.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

import redis
from django.conf import settings

from mothership.infra.redis import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "mothership:heartbeat:"
KEEP_SECONDS = 24 * 3600  # how long a worker gone is remembered ("no turn worker seen for 5 min")

_QUEUE = re.compile(r"[\w.:@-]{1,200}")
_KINDS = ("workers", "beat")


def heartbeat_key(kind: str, queue: str) -> str:
    """``kind`` is ``workers`` (the sorted set of a queue's workers) or ``beat`` (beat's last tick)."""
    if kind not in _KINDS:
        raise ValueError(kind)
    if not _QUEUE.fullmatch(queue):
        raise ValueError(f"not a queue name: {queue!r}")
    return f"{KEY_PREFIX}{kind}:{queue}"


# Redis' clock in ms; a beat on each queue's set, the ones not seen for KEEP dropped, the set kept as long.
_WORKER_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[2]))
  redis.call('PEXPIRE', key, ARGV[2])
end
return now
"""

_BEAT_TICK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], now, 'PX', ARGV[1])
return now
"""


def worker_beat(*, name: str, queues: list[str]) -> None:
    """One beat of the worker ``name`` (its Celery node name) on each queue it consumes."""
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"not a worker name: {name!r}")
    keys = [heartbeat_key("workers", queue) for queue in queues]
    get_redis().eval(_WORKER_BEAT, len(keys), *keys, name, KEEP_SECONDS * 1000)


def beat_tick(*, queue: str) -> None:
    """Beat ticked (its scheduler ran), for the deployment of ``queue``."""
    get_redis().eval(_BEAT_TICK, 1, heartbeat_key("beat", queue), KEEP_SECONDS * 1000)


@dataclass(frozen=True)
class Heartbeats:
    """Seconds since the newest beat of each, on Redis' clock; None when none is remembered."""

    turn_worker: float | None
    background_worker: float | None
    beat: float | None


def heartbeats_read(client: redis.Redis, *, turn_queue: str, background_queue: str) -> Heartbeats:
    """The newest beats, in one round trip on ``client`` (``/readyz`` gives one with a short timeout)."""
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.zrange(heartbeat_key("workers", turn_queue), 0, 0, desc=True, withscores=True)
    pipe.zrange(heartbeat_key("workers", background_queue), 0, 0, desc=True, withscores=True)
    pipe.get(heartbeat_key("beat", turn_queue))
    (seconds, micros), turn, background, beat = pipe.execute()
    now_ms = seconds * 1000 + micros // 1000

    def age(ms) -> float | None:
        return None if ms is None else max(0.0, (now_ms - float(ms)) / 1000)

    return Heartbeats(
        turn_worker=age(turn[0][1] if turn else None),
        background_worker=age(background[0][1] if background else None),
        beat=age(beat),
    )


class WorkerHeartbeat(threading.Thread):
    """A worker's beats, every ``MOTHERSHIP_READY_HEARTBEAT`` seconds, from a thread of its own (a
    pool full of turns never delays one); the first at once."""

    def __init__(self, *, name: str, queues: list[str]):
        super().__init__(name="ready-heartbeat", daemon=True)
        self.worker, self.queues = name, queues
        self.stopping = threading.Event()

    def run(self) -> None:
        away = False  # said once per outage, not at every beat
        while True:
            try:
                worker_beat(name=self.worker, queues=self.queues)
            except redis.RedisError as exc:  # Redis away: /readyz says so itself; the next beat tries again
                if not away:
                    logger.warning("worker %s could not write its heartbeat (%s); trying again every beat", self.worker, exc)
                away = True
            else:
                away = False
            if self.stopping.wait(settings.MOTHERSHIP_READY_HEARTBEAT):
                return


__all__ = ["KEY_PREFIX", "Heartbeats", "WorkerHeartbeat", "beat_tick", "heartbeat_key", "heartbeats_read", "worker_beat"]
