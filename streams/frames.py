"""Delta frames: a turn's first delta at once, then every live turn's new text on one clock.

A worker process runs one frame clock. Every ``MOTHERSHIP_DELTA_FLUSH_MS`` it takes the text
each live turn received since the last tick and appends one ``stream.delta`` per turn, all in
one Redis pipeline (each append still fenced by its own stream's lock). So Redis, the web
processes and the sockets pay per frame, not per token, and the worker pays one round trip per
tick for all its turns instead of one per frame per turn, with no timer per turn.

With ``MOTHERSHIP_DELTA_FLUSH_MS = 0`` every delta is its own frame, appended at once.
"""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings

from mothership.infra.redis import UNAVAILABLE
from spend import counters
from streams import eventlog

logger = logging.getLogger(__name__)


class FrameClock(threading.Thread):
    def __init__(self, interval: float):
        super().__init__(name="frame-clock", daemon=True)
        self.interval = interval
        self._lock = threading.Lock()
        self._due: dict[int, object] = {}  # id(journal) → a turn's journal, in the order they became due
        self.stopping = threading.Event()

    def schedule(self, run) -> None:
        """``run`` has text waiting: publish it on the next tick."""
        with self._lock:
            self._due.setdefault(id(run), run)

    def run(self) -> None:
        while True:
            stopping = self.stopping.wait(self.interval)
            with self._lock:
                due, self._due = list(self._due.values()), {}
            if due:
                try:
                    publish_frames(due)
                except Exception:  # never let the clock die: each run learns of its own failure
                    logger.exception("frame clock tick failed")
                charge_frames(due)
            if stopping:
                return


def publish_frames(runs: list) -> None:
    """Append each run's waiting text as one delta, all in one pipeline; fence the runs that lost their lock."""
    held = []
    try:
        for run in sorted(runs, key=id):  # one lock order
            run.emit_lock.acquire()
            held.append(run)
        batch = []
        for run in held:
            if (event := run.take_frame()) is None:
                continue
            try:
                run.resync()  # after Redis was away: the log's lost tail first, the lock again
            except eventlog.Fenced:
                run.frame_fenced(event)
                continue
            except UNAVAILABLE as exc:
                run.frame_unsent(event, exc)
                continue
            batch.append((run, event))
        if not batch:
            return
        try:
            results = eventlog.append_many([(run.chat_id, run.stream.id, event) for run, event in batch])
        except UNAVAILABLE as exc:
            # Redis restarting or away for a moment: each frame is sent again on a later tick.
            for run, event in batch:
                run.frame_unsent(event, exc)
            return
        except redis.RedisError as exc:
            for run, event in batch:
                run.frame_failed(exc, event)
            return
        for (run, event), ok in zip(batch, results, strict=True):
            if ok:
                run.frame_appended(event)
            else:
                run.frame_fenced(event)
    finally:
        for run in held:
            run.emit_lock.release()


def charge_frames(runs: list) -> None:
    """Charge each run's newly published output that is due (its meter's ``take_charge``) against its budget,
    all in one round trip; a run whose workspace (or member) is now past its budget stops. Never
    raises: a charge Redis did not take is settled by the turn's seal."""
    charges = []
    for run in runs:
        with run.emit_lock:
            charge = run.meter.take_charge()
        if charge is not None:
            charges.append((run, charge))
    if not charges:
        return
    try:
        over = counters.charge_many([charge for _, charge in charges])
    except redis.RedisError:
        logger.warning("frame charges of %d turns not counted", len(charges), exc_info=True)
        return
    for (run, _), (past_budget, room) in zip(charges, over, strict=True):
        run.meter.charged(past_budget=past_budget, room=room)


_clock: FrameClock | None = None
_clock_lock = threading.Lock()


def clock() -> FrameClock | None:
    """The process's frame clock (started on first use); None when every delta is its own frame."""
    global _clock
    interval = settings.MOTHERSHIP_DELTA_FLUSH_MS / 1000.0
    if interval <= 0:
        return None
    with _clock_lock:
        if _clock is None or not _clock.is_alive() or _clock.interval != interval:
            if _clock is not None:
                _clock.stopping.set()  # it publishes what it holds, then ends
            _clock = FrameClock(interval)
            _clock.start()
        return _clock
