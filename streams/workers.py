"""Turn workers, each known by its slot (its Celery node name) and its boot (a fresh id each start).

``mothership:worker:boot:<boot>`` holds the slot, with a TTL of three ``MOTHERSHIP_WORKER_HEARTBEAT``s
that a thread of the worker renews; ``mothership:worker:slot:<slot>`` holds the slot's latest boot.
A turn's worker names itself beside the turn's lock (``streams.locks.worker_key``), so the sweeper
knows when a turn's worker no longer exists without waiting for the lock to expire: its slot has a
newer boot (the worker was restarted), or its boot key is gone once Redis has been up for a worker
TTL (a Redis restarted empty, or from a file older than the last beat, lost the keys of live
workers too, and each writes its key again at its next beat).
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from django.conf import settings

from mothership.infra.redis import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "mothership:worker:"

_BOOT = re.compile(r"[0-9a-f]{16}")  # 64 random bits (32 hex digits would be masked in logs as a secret)
_BEATS_PER_TTL = 3


@dataclass(frozen=True)
class Worker:
    boot: str
    slot: str

    def __post_init__(self):
        if not _BOOT.fullmatch(self.boot) or not self.slot or any(c.isspace() for c in self.slot):
            raise ValueError(f"not a worker: {self.boot!r} {self.slot!r}")

    @property
    def tag(self) -> str:
        """What a turn's companion key holds."""
        return f"{self.boot} {self.slot}"

    @classmethod
    def new_boot(cls, slot: str) -> Worker:
        """A fresh boot of ``slot`` (a process starting)."""
        return cls(boot=uuid.uuid4().hex[:16], slot=slot)

    @classmethod
    def of(cls, tag: bytes | str | None) -> Worker | None:
        """The worker a companion key names, or None (no key, or not a worker's tag)."""
        if tag is None:
            return None
        boot, _, slot = (tag.decode() if isinstance(tag, bytes) else tag).partition(" ")
        try:
            return cls(boot=boot, slot=slot)
        except ValueError:
            return None


def worker_key(kind: str, name: str) -> str:
    """``kind`` is ``boot`` (the key a live boot renews), ``slot`` (the slot's latest boot) or
    ``suspect`` (when a sweeper first found a boot's key gone)."""
    if kind not in ("boot", "slot", "suspect"):
        raise ValueError(kind)
    return f"{KEY_PREFIX}{kind}:{name}"


def worker_ttl() -> float:
    """Seconds a boot key outlives its last beat."""
    return settings.MOTHERSHIP_WORKER_HEARTBEAT * _BEATS_PER_TTL


def worker_beat(worker: Worker) -> str | None:
    """Renew ``worker``'s boot key and claim its slot, in one round trip; the slot's boot before."""
    # The slot is kept as long as a lock its turns hold may last: a worker restarted later finds
    # no turn of its old boot still locked.
    slot_ttl = int((settings.MOTHERSHIP_STREAM_LOCK_TTL + worker_ttl()) * 1000)
    pipe = get_redis().pipeline(transaction=False)
    pipe.set(worker_key("boot", worker.boot), worker.slot, px=int(worker_ttl() * 1000))
    pipe.set(worker_key("slot", worker.slot), worker.boot, px=slot_ttl, get=True)
    _, previous = pipe.execute()
    return previous.decode() if previous is not None else None


# A boot's key found gone: the time (Redis' clock) is noted the first time, and the worker is
# taken for gone only when its key is still gone a worker TTL later.
_SUSPECT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = redis.call('GET', KEYS[1])
if not since then
  redis.call('SET', KEYS[1], now, 'PX', ARGV[1])
  return 0
end
if now - tonumber(since) >= tonumber(ARGV[2]) then
  return 1
end
return 0
"""


def workers_lost(candidates: Iterable[Worker], *, redis_uptime: int) -> set[Worker]:
    """Which of ``candidates`` no longer exist: a newer boot holds the slot (one MGET), or the boot
    key is gone, and still gone a worker TTL after a sweep first found it gone, while Redis has
    been up for longer than a worker TTL.

    A key gone once proves little: a Redis that refused writes for a while (a full disk, a
    failover) let the keys of live workers expire, since they could not write them, and each
    writes its key again within a beat of Redis taking writes. (While it refuses them, the
    suspicion cannot be noted either: the sweep stops there.)
    """
    candidates = list(set(candidates))
    if not candidates:
        return set()
    client = get_redis()
    values = client.mget([worker_key("boot", w.boot) for w in candidates] + [worker_key("slot", w.slot) for w in candidates])
    n = len(candidates)
    # Within a worker TTL of a Redis start, a missing key may be a live worker's that has not beaten yet.
    absence_tells = redis_uptime >= worker_ttl()
    lost, gone = set(), []
    for worker, beating, latest in zip(candidates, values[:n], values[n:]):
        if latest is not None and latest.decode() != worker.boot:
            lost.add(worker)  # restarted: its slot has a newer boot
        elif beating is None and absence_tells:
            gone.append(worker)
    if gone:
        ttl_ms = int(worker_ttl() * 1000)
        script = client.register_script(_SUSPECT)
        pipe = client.pipeline(transaction=False)
        for worker in gone:
            # The note lasts long enough to be confirmed, not so long that an old one confirms a new absence.
            script(keys=[worker_key("suspect", worker.boot)], args=[3 * ttl_ms, ttl_ms], client=pipe)
        lost.update(worker for worker, confirmed in zip(gone, pipe.execute()) if confirmed)
    return lost


class WorkerBeat(threading.Thread):
    """The thread a turn worker runs beside its pool: ``worker_beat`` every MOTHERSHIP_WORKER_HEARTBEAT."""

    def __init__(self, worker: Worker):
        super().__init__(name="worker-beat", daemon=True)
        self.worker = worker
        self.stopping = threading.Event()

    def run(self) -> None:
        away = False  # said once per outage, not at every beat
        while not self.stopping.wait(settings.MOTHERSHIP_WORKER_HEARTBEAT):
            try:
                previous = worker_beat(self.worker)
            except redis.RedisError as exc:  # Redis away for a moment: the next beat writes the key again
                if not away:
                    logger.warning("worker %s could not renew its key (%s); trying again every beat", self.worker.slot, exc)
                away = True
                continue
            if away:
                logger.warning("worker %s renews its key again", self.worker.slot)
                away = False
            if previous not in (None, self.worker.boot):
                # Two live workers with one name would each take the other for restarted.
                logger.error(
                    "another running worker is also named %s: give each worker its own name (celery -n)", self.worker.slot
                )


_current: Worker | None = None
_beat: WorkerBeat | None = None


def current() -> Worker | None:
    """This process' worker, once it started as one (None elsewhere: web, beat, tests in process)."""
    return _current


def current_tag() -> str | None:
    """What a turn's companion key names: this process' worker (read at each beat of a turn, which
    may have started before the worker registered)."""
    return _current.tag if _current is not None else None


def worker_start(*, slot: str) -> Worker:
    """Name this process a new boot of ``slot`` in Redis and keep its key alive; a turn it claims names it."""
    global _current, _beat
    worker = Worker.new_boot(slot)
    try:
        previous = worker_beat(worker)
    except redis.RedisError as exc:
        logger.warning("worker %s could not write its key yet (%s); its beat retries", slot, exc)
        previous = None
    if previous is not None:
        logger.info("worker %s started again: the turns of its boot %s are lost", slot, previous)
    _current = worker
    _beat = WorkerBeat(worker)
    _beat.start()
    return worker


def worker_stop() -> None:
    global _beat
    if _beat is not None:
        _beat.stopping.set()
        _beat = None
