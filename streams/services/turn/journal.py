"""A turn's journal: its events, in seq order, in its fenced event log.

``emit_lock`` orders every append of the turn (the run loop's, the producer's first delta, the
frame clock's), so its seqs reach the log gapless and in order. The model's first delta goes out
at once, the rest on the worker's frame clock (``streams.frames``), which calls the ``take_frame``
/ ``frame_*`` methods with ``emit_lock`` held.

A Redis that is away (or refusing writes) is retried for up to the lock's TTL while the model
runs; afterwards the log's lost tail is written again before the next append (``resync``). Once
the model has ended, Redis is not waited for: the turn is sealed at once. A journal that may not
append any more (fenced by a newer turn, Redis away for longer than the TTL, or away when the model
ended) holds the text it received for the seal, which writes what the log lacks before its
terminal event once Redis takes writes again (``owe``, ``write_back``).
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.utils import timezone

from mothership.infra import metrics
from mothership.infra.database import connection_release
from mothership.infra.redis import UNAVAILABLE, retrying
from streams import eventlog, events, frames, locks
from streams.models import Stream
from streams.providers import Usage
from streams.services.turn.meter import Meter

logger = logging.getLogger(__name__)


class RedisLost(Exception):
    """Redis stayed away for longer than the lock's TTL: the turn ends with what it received."""


class Journal:
    """Writes one turn's events. ``stop`` is set when it may write no more; ``wake`` hands the run
    loop what ended the writing (``Fenced``, ``RedisLost`` or a Redis error) from another thread."""

    def __init__(self, *, stream: Stream, meter: Meter, stop: threading.Event, wake):
        self.stream = stream
        self.chat_id = stream.chat_id
        self.meter = meter
        self.stop = stop
        self.wake = wake
        self.fenced = threading.Event()
        self.seq = 0
        self.text: list[str] = []  # every piece of text in the log, in order
        self.emit_lock = threading.Lock()
        self.pending: list[str] = []  # text received, not yet in a frame
        self.pending_deltas = 0  # how many deltas the frame taken last (or unsent) holds
        # Every event this turn appended, in seq order: what it writes again into a log that lost
        # its tail (a Redis restarted from its append-only file) before its next append.
        self.appended: list[dict] = []
        self.needs_resync = False
        self.unsent: dict | None = None  # a frame Redis did not take; it goes first, unchanged
        self.unavailable_since: float | None = None
        self.redis_lost = False  # Redis away for longer than the TTL: nothing more is tried until the seal
        self.deferred = False  # Redis away when the model ended: the rest is the seal's to write
        self.held: list[str] = []  # text received but never appended (fenced, or Redis lost): saved by the seal
        self.owed: list[dict] = []  # the events the seal writes before its terminal one (``owe``)
        self.closed = False  # the turn's text is final: later deltas are dropped
        self.vanished_at: int | None = None  # the seq at which a lock found gone was taken again (once a seq)
        self.clock = frames.clock()

    def emit(self, type: str, **fields) -> None:
        with self.emit_lock:
            self._emit(type, **fields)

    def _emit(self, type: str, *, wait: bool = True, **fields) -> None:
        if self.fenced.is_set():
            raise eventlog.Fenced(str(self.stream.id))
        self._append(self._event(type, seq=self.seq + 1, **fields), wait=wait)

    def _append(self, event: dict, *, wait: bool = True) -> None:
        """Append the next event, riding out a Redis that is away for up to the lock's TTL; or,
        not ``wait``ing (the model has ended), trying once and raising what Redis raised."""

        def once():
            try:
                self.resync()
                eventlog.append(chat_id=self.chat_id, stream_id=self.stream.id, event=event)
            except UNAVAILABLE:
                self.needs_resync = True
                raise

        if self.redis_lost:
            raise RedisLost(str(self.stream.id))
        for_seconds = settings.MOTHERSHIP_STREAM_LOCK_TTL if wait else 0
        try:
            try:
                retrying(once, for_seconds=for_seconds, what=f"stream {self.stream.id}")
            except eventlog.Fenced:
                if not self._lock_vanished(event["seq"]):
                    raise
                retrying(once, for_seconds=for_seconds, what=f"stream {self.stream.id}")
        except eventlog.Fenced:
            self.fenced.set()
            self.stop.set()
            raise
        except UNAVAILABLE as exc:
            if not wait:
                raise
            self.lose_redis()
            raise RedisLost(str(self.stream.id)) from exc
        self.appended.append(event)
        self.seq = event["seq"]

    def _lock_vanished(self, seq: int) -> bool:
        """An append refused for want of the lock, with no other turn holding it: a Redis restarted
        empty between two appends (none failed, so nothing knew) lost it. The append is tried again
        once, after ``resync`` (the log's lost tail written again, the lock taken again unless the
        turn was sealed meanwhile); refused again, the turn is fenced."""
        if self.vanished_at == seq:
            return False
        try:
            if locks.lock_owner(chat_id=self.chat_id) is not None:
                return False
        except UNAVAILABLE:
            return False
        logger.warning("stream %s: its lock is gone (a Redis restarted empty?); taking it again", self.stream.id)
        self.vanished_at, self.needs_resync = seq, True
        return True

    def redis_was_away(self) -> None:
        """Redis was away or lost the lock (the heartbeat saw it): the next append first writes
        again whatever the log lost, as after a failed append."""
        self.needs_resync = True

    def lose_redis(self) -> None:
        logger.error("stream %s: redis away for longer than the lock's TTL; sealing the turn with its text", self.stream.id)
        self.redis_lost = True
        self.stop.set()

    def resync(self) -> None:
        """After Redis was away: write again what its log lost, and take the lock again if it is gone.

        A Redis restarted from its append-only file may have lost its last second of writes, or
        (restarted empty) everything. A lock held by another turn is never taken: this turn is fenced.
        """
        if not self.needs_resync:
            return
        self.retake_lock()
        self._write_missing(self.appended, fenced=True)
        self.needs_resync = False

    def retake_lock(self) -> bool:
        """Take the lock again if Redis lost it (restarted empty) while this turn is still live.

        False when another turn holds it (a newer turn started meanwhile): this turn is fenced.
        Never for a turn already sealed (by a stop, or the sweeper while Redis was away).
        """
        owner = locks.lock_owner(chat_id=self.chat_id)
        if owner is None:
            live = Stream.objects.filter(pk=self.stream.pk, status=Stream.Status.STREAMING).exists()
            connection_release()  # back to the pool: this runs on the clock's thread too
            if live and locks.lock_acquire(chat_id=self.chat_id, stream_id=self.stream.id):
                logger.warning("stream %s took its lock again after Redis lost it", self.stream.id)
                return True
            owner = locks.lock_owner(chat_id=self.chat_id)
        return owner == str(self.stream.id)

    # --- the model's text ------------------------------------------------------------------

    def add_text(self, text: str) -> None:
        """A delta from the model (producer thread): the first one at once, the rest on the frame clock."""
        with self.emit_lock:
            if self.closed:
                return
            direct = self.stream.first_delta_at is None or self.clock is None
            if direct:
                self._emit_delta(text)
            else:
                self.pending.append(text)
        if not direct:
            self.clock.schedule(self)
        elif self.clock is None:  # every delta its own frame: each is charged as it goes
            frames.charge_frames([self])

    def _emit_delta(self, text: str, deltas: int = 1, *, wait: bool = True) -> None:
        first = self.stream.first_delta_at is None
        if first:
            self.stream.first_delta_at = timezone.now()
        try:
            self._emit(events.DELTA, wait=wait, text=text)
        except (eventlog.Fenced, RedisLost, *UNAVAILABLE):
            self.held.append(text)
            raise
        if first:  # Send (the turn created) → its first delta in the log, as every tab can see it
            metrics.observe(metrics.FIRST_DELTA, (timezone.now() - self.stream.created_at).total_seconds())
        self._published(text, deltas)

    def charge_output(self, text: str, tokens: int) -> None:
        """Output that is not the reply's text (a tool call's arguments), charged as text is."""
        with self.emit_lock:
            self.meter.published(text, tokens)

    def _published(self, text: str, deltas: int = 1) -> None:
        self.text.append(text)
        self.meter.published(text, deltas)

    # --- called by the frame clock, with ``emit_lock`` held --------------------------------

    def take_frame(self) -> dict | None:
        if self.closed or self.fenced.is_set() or self.redis_lost:
            return None
        if self.unsent is not None:
            return self.unsent
        if not self.pending:
            return None
        text = "".join(self.pending)
        self.pending_deltas, self.pending = len(self.pending), []
        return self._event(events.DELTA, seq=self.seq + 1, text=text)

    def frame_appended(self, event: dict) -> None:
        self.appended.append(event)
        self.seq = event["seq"]
        self._published(event["text"], self.pending_deltas)
        if self.unavailable_since is not None:
            logger.warning("redis back for stream %s after %.1f s", self.stream.id, time.monotonic() - self.unavailable_since)
        self.unsent, self.unavailable_since = None, None

    def frame_unsent(self, event: dict, exc: BaseException) -> None:
        """Redis did not take the frame: it is sent again, unchanged, on a later tick (the text
        that arrives meanwhile waits for the next frame), for up to the lock's TTL."""
        now = time.monotonic()
        self.unsent, self.needs_resync = event, True
        if self.unavailable_since is None:
            logger.warning(
                "redis unavailable during stream %s (%s); retrying for up to %.0f s",
                self.stream.id,
                exc,
                settings.MOTHERSHIP_STREAM_LOCK_TTL,
            )
        self.unavailable_since = self.unavailable_since or now
        if now - self.unavailable_since > settings.MOTHERSHIP_STREAM_LOCK_TTL:
            self.lose_redis()  # the frame stays unsent: the seal holds it
            self.wake(RedisLost(str(self.stream.id)))
        elif self.clock is not None:
            self.clock.schedule(self)

    def frame_fenced(self, event: dict) -> None:
        if self._lock_vanished(event["seq"]):
            self.frame_unsent(event, ConnectionError("its lock was gone"))  # the next tick takes it again first
            return
        self._hold(event)
        self.fenced.set()
        self.stop.set()
        self.wake(eventlog.Fenced(str(self.stream.id)))

    def frame_failed(self, exc: BaseException, event: dict | None = None) -> None:
        if event is not None:
            self._hold(event)
        self.wake(exc)  # the run loop raises it: the turn ends with what it received

    def _hold(self, event: dict) -> None:
        """A frame that will never be appended by the clock: its text is kept for the seal."""
        if self.unsent is event:
            self.unsent = None
        self.held.append(event["text"])

    # --- the end of the turn ---------------------------------------------------------------

    def flush(self, *, model_ended: bool = False) -> None:
        """Publish the text still waiting for a frame, now (before the usage and the terminal).

        A journal that may not append any more (fenced, or Redis lost) holds that text for the seal.
        Once the ``model_ended``, a Redis that is away is not waited for: the turn is sealed at once
        in the database, and what Redis did not take is held for the seal to write (``defer``).
        """
        with self.emit_lock:
            if self.closed:
                return
            if self.fenced.is_set() or self.redis_lost or self.deferred:
                self._hold_the_rest()
                return
            try:
                if self.unsent is not None:  # a frame Redis has not taken yet goes first
                    try:
                        self._append(self.unsent, wait=not model_ended)
                    except (eventlog.Fenced, RedisLost):
                        self._hold_the_rest()
                        raise
                    self._published(self.unsent["text"], self.pending_deltas)
                    self.unsent = None
                if self.pending:
                    text, deltas = "".join(self.pending), len(self.pending)
                    self.pending.clear()
                    self._emit_delta(text, deltas, wait=not model_ended)
            except UNAVAILABLE as exc:  # only when not waiting: the model has ended
                self._defer(exc)

    def emit_usage(self, usage: Usage) -> None:
        """The turn's usage, once its model has ended: appended if Redis takes it at once, else
        the seal writes it (``owe``) when Redis is back. A fenced turn writes nothing (``Fenced``)."""
        with self.emit_lock:
            if self.deferred or self.redis_lost:
                return
            try:
                self._emit(events.USAGE, wait=False, **usage.event_fields())
            except UNAVAILABLE as exc:
                self._defer(exc)

    def _defer(self, exc: BaseException) -> None:
        """Redis is away (or refuses writes) and the model has ended: the turn is not kept waiting
        for it; what the log lacks is written by the seal, before its terminal event."""
        logger.warning(
            "stream %s: the model ended while redis was unavailable (%s); sealing now, the events follow", self.stream.id, exc
        )
        self.deferred = self.needs_resync = True
        self._hold_the_rest()

    def _hold_the_rest(self) -> None:
        if self.unsent is not None:
            self.held.append(self.unsent["text"])
            self.unsent = None
        self.held.extend(self.pending)
        self.pending.clear()

    def close(self) -> None:
        with self.emit_lock:
            self.closed = True
            self.pending.clear()

    def received_text(self) -> str:
        """Everything the model sent: what the log has, and what it was never given."""
        return "".join(self.text) + "".join(self.held)

    def owe(self, usage: Usage) -> int:
        """What the seal writes before its terminal event: the held text, and the usage if the log
        lacks it. Returns the seq of the last of them (the terminal event's is the next)."""
        self.owed = []
        if self.held:
            self.owed.append(self._event(events.DELTA, seq=self.seq + 1, text="".join(self.held)))
        if usage != Usage() and not any(e["type"] == events.USAGE for e in self.appended[-1:]):
            self.owed.append(self._event(events.USAGE, seq=self.seq + len(self.owed) + 1, **usage.event_fields()))
        return self.seq + len(self.owed)

    def write_back(self, after_failure: bool) -> None:
        """Called by the seal, before its terminal event: the events of this turn the log lacks
        (lost by a restarted Redis, or never appended), unfenced: the seal is this turn's, and the
        log is this turn's own. Idempotent; nothing to do (no round trip) when Redis never failed."""
        if not (after_failure or self.needs_resync or self.owed):
            return
        self._write_missing(self.appended + self.owed, fenced=False)
        self.needs_resync = False

    def _write_missing(self, turn_events: list[dict], *, fenced: bool) -> None:
        """Append the events (seq 1, 2, …) past the log's last one: what a restarted Redis lost."""
        for event in turn_events[eventlog.last_seq(self.stream.id) :]:
            eventlog.append(chat_id=self.chat_id, stream_id=self.stream.id, event=event, fenced=fenced)

    def _event(self, type: str, *, seq: int, **fields) -> dict:
        return events.stream_event(type=type, chat_id=self.chat_id, stream_id=self.stream.id, seq=seq, **fields)
