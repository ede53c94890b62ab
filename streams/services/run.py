"""The worker's side of a turn: claim the queued stream, stream the model's deltas, seal it.

The heartbeat keeps the lock; a stop reaches the run loop through the abort listener; every
event is appended through the fenced event log, so a run that lost its lock writes nothing more
to the log while it runs. Whatever ends the run, it seals its own turn with every character it
received, unless a stop or the sweeper sealed it first (the seal is a conditional update): a run
fenced by a newer turn ends ``interrupted / lock_lost``, one whose Redis stayed away for longer
than the lock's TTL ends ``interrupted / redis_unavailable``; the events the log lacks are
written before the terminal event once Redis answers again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import redis
from django import db
from django.conf import settings
from django.utils import timezone

from mothership.infra.database import retrying_database
from mothership.infra.redis import UNAVAILABLE, retrying
from mothership.infra.signals import send_logged
from streams import abort, eventlog, events, frames, locks
from streams.models import Stream
from streams.providers import ProviderError, TextDelta, Usage, get_provider
from streams.providers.base import CHARS_PER_TOKEN, with_estimate
from streams.services.finalize import SEAL_RETRY_SECONDS, stream_finalize_despite_outage
from streams.services.history import continued_text, conversation_history
from streams.services.spending import TurnBudget
from streams.signals import turn_claimed

logger = logging.getLogger(__name__)

BUDGET = "budget"  # the reason of a turn stopped at its workspace's (or its member's) budget
# Output is charged as it is published, each frame once what is owed reaches 1/1000 of what the
# budget has left (so a thousand turns at once could not overshoot it between charges), and at
# least every 2 s (so the counters stay live, and a budget set meanwhile is heard).
TURNS_SHARING_THE_ROOM = 1000
CHARGE_AT_LEAST_EVERY = 2.0
_END = object()
_ABORT = object()
_DRAIN_AFTER_STOP = 0.2  # seconds: how long a stopped model's last words are waited for


class RedisLost(Exception):
    """Redis stayed away for longer than the lock's TTL: the turn ends with what it received."""


class _Heartbeat(threading.Thread):
    """Keeps the liveness lock; on loss of ownership, fences the run and stops generation."""

    def __init__(self, *, chat_id, stream_id, stop: threading.Event, fenced: threading.Event, on_abort=None, retake_lock=None):
        super().__init__(name=f"heartbeat-{stream_id}", daemon=True)
        self.chat_id, self.stream_id, self.stop_generation, self.fenced = chat_id, stream_id, stop, fenced
        self.on_abort, self.retake_lock = on_abort, retake_lock
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(settings.MOTHERSHIP_STREAM_HEARTBEAT):
            try:
                renewed = locks.lock_heartbeat(chat_id=self.chat_id, stream_id=self.stream_id)
                if not renewed and self.retake_lock is not None:
                    renewed = self.retake_lock()  # a Redis restarted empty lost it: ours again, unless a newer turn's
                if not renewed:
                    logger.warning("stream %s lost its lock; fencing", self.stream_id)
                    self.fenced.set()
                    self.stop_generation.set()
                    return
                # Belt and braces for a lost publish (a half-open pub/sub socket): the key stays.
                if self.on_abort is not None and (request := abort.abort_pending(stream_id=self.stream_id)):
                    self.on_abort(request)
            except Exception:
                # Redis or the database away for a moment: the lock may still be ours; the next
                # beat (or its expiry) decides. The heartbeat never dies.
                logger.exception("heartbeat failed for stream %s", self.stream_id)


class _Run:
    """One turn in the worker. The producer thread feeds it the model's deltas; the frame clock
    (``streams.frames``) publishes them in frames; the run loop waits for the end or a stop.

    ``emit_lock`` orders every append of this turn (the run loop's, the producer's first delta,
    the frame clock's), so its seqs reach the log gapless and in order.
    """

    def __init__(self, stream: Stream):
        self.stream = stream
        self.chat_id = stream.chat_id
        self.seq = 0
        self.text: list[str] = []
        self.usage = Usage()
        self.history: list[dict] | None = None  # the prompt the model was sent (set once generation starts)
        self.usage_settled = False  # estimated where missing, once (``estimate_usage``)
        self.stop = threading.Event()
        self.fenced = threading.Event()
        self.aborted: abort.AbortRequest | None = None
        self.abort_seen: abort.AbortRequest | None = None
        self.abort_noticed_at = None
        self.cut_short = False
        self.emit_lock = threading.Lock()
        self.pending: list[str] = []  # text received, not yet in a frame
        self.pending_deltas = 0  # how many deltas the frame taken last (or unsent) holds
        # Every event this run appended, in seq order: what it writes again into a log that lost
        # its tail (a Redis restarted from its append-only file) before its next append.
        self.appended: list[dict] = []
        self.needs_resync = False
        self.unsent: dict | None = None  # a frame Redis did not take; it goes first, unchanged
        self.unavailable_since: float | None = None
        self.redis_lost = False  # Redis away for longer than the TTL: nothing more is tried until the seal
        self.held: list[str] = []  # text received but never appended (fenced, or Redis lost): saved by the seal
        self.owed: list[dict] = []  # the events the seal writes before its terminal one (``seal_text``)
        self.closed = False  # the turn's text is final: later deltas are dropped
        self.clock = frames.clock()
        self._items: queue.Queue = queue.Queue()
        self.budget: TurnBudget | None = None  # where this turn's spend counts (set with the claim)
        self.uncharged_chars = 0  # output published, not yet charged against the budget
        self.uncharged_deltas = 0  # the model's deltas in it (a token each, for some providers)
        self.delta_is_token = False
        # Charged once this much is owed (a share of what the budget has left), or every
        # CHARGE_AT_LEAST_EVERY seconds: every frame near the limit, rarely far from it.
        self.charge_from = 0.0
        self.charged_at = time.monotonic()

    def on_abort(self, request: abort.AbortRequest) -> None:
        """Called by the abort listener's thread: stop the model and wake the run loop now."""
        if self.aborted is not None:
            return
        self.abort_noticed_at = timezone.now()
        self.aborted = request
        self.stop.set()
        self._items.put(_ABORT)

    def emit(self, type: str, **fields) -> None:
        with self.emit_lock:
            self._emit(type, **fields)

    def _emit(self, type: str, **fields) -> None:
        if self.fenced.is_set():
            raise eventlog.Fenced(str(self.stream.id))
        self._append(events.stream_event(type=type, chat_id=self.chat_id, stream_id=self.stream.id, seq=self.seq + 1, **fields))

    def _append(self, event: dict) -> None:
        """Append the next event, riding out a Redis that is away for up to the lock's TTL."""

        def once():
            try:
                self.resync()
                eventlog.append(chat_id=self.chat_id, stream_id=self.stream.id, event=event)
            except UNAVAILABLE:
                self.needs_resync = True
                raise

        if self.redis_lost:
            raise RedisLost(str(self.stream.id))
        try:
            retrying(once, for_seconds=settings.MOTHERSHIP_STREAM_LOCK_TTL, what=f"stream {self.stream.id}")
        except eventlog.Fenced:
            self.fenced.set()
            self.stop.set()
            raise
        except UNAVAILABLE as exc:
            self.lose_redis()
            raise RedisLost(str(self.stream.id)) from exc
        self.appended.append(event)
        self.seq = event["seq"]

    def lose_redis(self) -> None:
        logger.error("stream %s: redis away for longer than the lock's TTL; sealing the turn with its text", self.stream.id)
        self.redis_lost = True
        self.stop.set()

    def resync(self) -> None:
        """After Redis was away: write again what its log lost, and take the lock again if it is gone.

        A Redis restarted from its append-only file may have lost its last second of writes, or
        (restarted empty) everything. A lock held by another turn is never taken: this run is fenced.
        """
        if not self.needs_resync:
            return
        self.retake_lock()
        self._write_missing(self.appended, fenced=True)
        self.needs_resync = False

    def retake_lock(self) -> bool:
        """Take the lock again if Redis lost it (restarted empty) while this turn is still live.

        False when another turn holds it (a newer turn started meanwhile): this run is fenced.
        Never for a turn already sealed (by a stop, or the sweeper while Redis was away).
        """
        owner = locks.lock_owner(chat_id=self.chat_id)
        if owner is None:
            live = Stream.objects.filter(pk=self.stream.pk, status=Stream.Status.STREAMING).exists()
            if not db.connection.in_atomic_block:  # back to the pool: this runs on the clock's thread too
                db.connection.close()
            if live and locks.lock_acquire(chat_id=self.chat_id, stream_id=self.stream.id):
                logger.warning("stream %s took its lock again after Redis lost it", self.stream.id)
                return True
            owner = locks.lock_owner(chat_id=self.chat_id)
        return owner == str(self.stream.id)

    def _emit_delta(self, text: str, deltas: int = 1) -> None:
        if self.stream.first_delta_at is None:
            self.stream.first_delta_at = timezone.now()
        try:
            self._emit(events.DELTA, text=text)
        except (eventlog.Fenced, RedisLost):
            self.held.append(text)
            raise
        self._published(text, deltas)

    def _published(self, text: str, deltas: int = 1) -> None:
        self.text.append(text)
        self.uncharged_chars += len(text)
        self.uncharged_deltas += deltas

    def take_charge(self):
        """The output published since the last charge, as (its live charge, nano-dollars), once it
        is due: when it reaches ``charge_from`` (a share of what the budget had left at the last
        charge), or ``CHARGE_AT_LEAST_EVERY`` seconds after it. None until then."""
        if self.budget is None or not self.uncharged_chars:
            return None
        tokens = self.uncharged_deltas if self.delta_is_token else -(-self.uncharged_chars // CHARS_PER_TOKEN)
        amount = self.budget.output_nanousd(tokens)
        if amount < self.charge_from and time.monotonic() - self.charged_at < CHARGE_AT_LEAST_EVERY:
            return None
        self.uncharged_chars = self.uncharged_deltas = 0
        return self.budget.live, amount

    def charged(self, *, past_budget: bool, room: int | None) -> None:
        """A charge's answer: stop at the budget, else when the next one is due. With
        ``TURNS_SHARING_THE_ROOM`` turns each owing at most that share of the room, together they
        cannot cross it between two charges; with no budget, only the clock makes it due."""
        self.charged_at = time.monotonic()
        self.charge_from = float("inf") if room is None else room / TURNS_SHARING_THE_ROOM
        if past_budget:
            self.over_budget()

    def over_budget(self) -> None:
        """The budget is spent: the turn stops as a user's Stop would, its text kept (``cancelled / budget``)."""
        self.on_abort(abort.AbortRequest(reason=BUDGET, requested_at=time.time()))

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
        return events.stream_event(type=events.DELTA, chat_id=self.chat_id, stream_id=self.stream.id, seq=self.seq + 1, text=text)

    def frame_appended(self, event: dict) -> None:
        self.appended.append(event)
        self.seq = event["seq"]
        self._published(event["text"], self.pending_deltas)
        self.unsent, self.unavailable_since = None, None

    def frame_unsent(self, event: dict, exc: BaseException) -> None:
        """Redis did not take the frame: it is sent again, unchanged, on a later tick (the text
        that arrives meanwhile waits for the next frame), for up to the lock's TTL."""
        now = time.monotonic()
        self.unsent, self.needs_resync = event, True
        self.unavailable_since = self.unavailable_since or now
        if now - self.unavailable_since > settings.MOTHERSHIP_STREAM_LOCK_TTL:
            self.lose_redis()  # the frame stays unsent: the seal holds it
            self._items.put(RedisLost(str(self.stream.id)))
        elif self.clock is not None:
            self.clock.schedule(self)

    def frame_fenced(self, event: dict) -> None:
        self._hold(event)
        self.fenced.set()
        self.stop.set()
        self._items.put(eventlog.Fenced(str(self.stream.id)))

    def frame_failed(self, exc: BaseException, event: dict | None = None) -> None:
        if event is not None:
            self._hold(event)
        self._items.put(exc)  # the run loop raises it: the turn ends with what it received

    def _hold(self, event: dict) -> None:
        """A frame that will never be appended by the clock: its text is kept for the seal."""
        if self.unsent is event:
            self.unsent = None
        self.held.append(event["text"])

    # --------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Publish the text still waiting for a frame, now (before the usage and the terminal).

        A run that may not append any more (fenced, or Redis lost) holds that text for its seal.
        """
        with self.emit_lock:
            if self.closed:
                return
            if self.fenced.is_set() or self.redis_lost:
                self._hold_the_rest()
                return
            if self.unsent is not None:  # a frame Redis has not taken yet goes first
                try:
                    self._append(self.unsent)
                except (eventlog.Fenced, RedisLost):
                    self._hold_the_rest()
                    raise
                self._published(self.unsent["text"], self.pending_deltas)
                self.unsent = None
            if self.pending:
                text, deltas = "".join(self.pending), len(self.pending)
                self.pending.clear()
                self._emit_delta(text, deltas)

    def _hold_the_rest(self) -> None:
        if self.unsent is not None:
            self.held.append(self.unsent["text"])
            self.unsent = None
        self.held.extend(self.pending)
        self.pending.clear()

    def seal_text(self) -> tuple[str, int]:
        """The text the seal saves (everything received) and the seq of its last event before the
        terminal one. Text and usage that never reached the log are owed to it: ``write_back``
        appends them, with whatever a restarted Redis lost, before the terminal event."""
        self.owed = []
        if self.held:
            self.owed.append(self._event(events.DELTA, seq=self.seq + 1, text="".join(self.held)))
        text = "".join(self.text) + "".join(self.held)
        self.estimate_usage(text, finished=False)  # a turn that did not end on its own (or already settled)
        if self.usage != Usage() and not any(e["type"] == events.USAGE for e in self.appended[-1:]):
            self.owed.append(self._event(events.USAGE, seq=self.seq + len(self.owed) + 1, **self.usage.event_fields()))
        return text, self.seq + len(self.owed)

    def estimate_usage(self, text: str, *, finished: bool) -> None:
        """What the model was billed for, estimated where it reported nothing (a stop before its
        last chunk); once per turn, so a finished turn's reported figures are never second-guessed."""
        if not self.usage_settled:
            self.usage = with_estimate(self.usage, prompt=self.history, text=text, finished=finished)
            self.usage_settled = True

    def write_back(self, after_failure: bool) -> None:
        """Called by the seal, before its terminal event: the events of this turn the log lacks
        (lost by a restarted Redis, or never appended), unfenced: the seal is this run's, and the
        log is this turn's own. Idempotent; nothing to do (no round trip) when Redis never failed."""
        if not (after_failure or self.needs_resync or self.owed):
            return
        self._write_missing(self.appended + self.owed, fenced=False)
        self.needs_resync = False

    def _write_missing(self, run_events: list[dict], *, fenced: bool) -> None:
        """Append the events (seq 1, 2, …) past the log's last one: what a restarted Redis lost."""
        for event in run_events[eventlog.last_seq(self.stream.id) :]:
            eventlog.append(chat_id=self.chat_id, stream_id=self.stream.id, event=event, fenced=fenced)

    def _event(self, type: str, *, seq: int, **fields) -> dict:
        return events.stream_event(type=type, chat_id=self.chat_id, stream_id=self.stream.id, seq=seq, **fields)

    def close(self) -> None:
        with self.emit_lock:
            self.closed = True
            self.pending.clear()

    def _produce(self, provider, messages, prefix: str = "") -> None:
        try:
            for item in provider.stream(messages=messages, stop=self.stop, cache_key=str(self.chat_id), prefix=prefix):
                if isinstance(item, TextDelta):
                    self.add_text(item.text)
                else:
                    self._items.put(item)
        except BaseException as exc:  # forwarded to the run loop, which decides the outcome
            self._items.put(exc)
        finally:
            # Was the model cut short by a stop? Written before _END, read after it.
            self.cut_short = self.stop.is_set()
            self._items.put(_END)

    def generate(self) -> None:
        """Stream the provider's deltas in frames until the model ends, fails, or a stop is drained.

        On a stop, what the model already sent (deltas, its usage) is drained for at most
        ``_DRAIN_AFTER_STOP`` seconds and kept; a model that does not return in that time is
        not waited for. What the model produced before an error is kept too.
        """
        history, prefix = retrying_database(
            lambda: (conversation_history(stream=self.stream), continued_text(stream=self.stream)),
            for_seconds=SEAL_RETRY_SECONDS,  # the heartbeat keeps the lock meanwhile
            what=f"the conversation of stream {self.stream.id}",
        )
        within_budget = retrying_database(
            lambda: self._prompt_within_budget(history),  # (its counters may be seeded from the ledger)
            for_seconds=SEAL_RETRY_SECONDS,
            what=f"the budget of stream {self.stream.id}",
        )
        if not within_budget:
            self.over_budget()
            self.abort_seen = self.aborted
            return
        self.history = history
        # The model may take minutes: the database connection goes back to the pool meanwhile
        # (the seal takes one again), so connections never grow with the turns in flight.
        if not db.connection.in_atomic_block:  # (a test's transaction keeps its connection)
            db.connection.close()
        provider = get_provider(self.stream.model_id or None)
        self.delta_is_token = getattr(provider, "delta_is_token", False)
        producer = threading.Thread(target=self._produce, args=(provider, history, prefix), daemon=True)
        producer.start()
        ended = False
        try:
            ended = self._consume()
            # Decided here, once: a stop that lands after the model finished on its own changes nothing.
            self.abort_seen = self.aborted if (not ended or self.cut_short) else None
        finally:
            self.stop.set()
            try:
                self.flush()
            finally:
                self.close()
            if ended:
                producer.join(timeout=5)

    def _prompt_within_budget(self, history: list[dict]) -> bool:
        """The prompt's cost taken from the budget before the model is called. When it would cross
        it, the model is never called (nothing is billed) and the turn ends ``cancelled / budget``."""
        if self.budget is None:
            return True
        try:
            return self.budget.reserve_prompt(stream=self.stream, history=history)
        except redis.RedisError:  # the appends will say whether Redis is away; the seal charges it
            logger.warning("stream %s: its prompt was not counted against the budget", self.stream.id, exc_info=True)
            return True

    def _consume(self) -> bool:
        """The run loop. True when the model ended on its own, False when a stop's drain ran out."""
        drain_until: float | None = None
        while True:
            try:
                item = self._items.get(timeout=None if drain_until is None else max(0.0, drain_until - time.monotonic()))
            except queue.Empty:
                return False
            if item is _ABORT:
                drain_until = drain_until or time.monotonic() + _DRAIN_AFTER_STOP
            elif item is _END:
                return True
            elif isinstance(item, BaseException):
                raise item
            elif isinstance(item, Usage):
                self.usage = item


@dataclass(frozen=True)
class _Outcome:
    status: str
    reason: str


_LOCK_LOST = _Outcome(Stream.Status.INTERRUPTED, "lock_lost")
_REDIS_LOST = _Outcome(Stream.Status.INTERRUPTED, "redis_unavailable")


def stream_run(*, stream_id) -> str:
    """Generate a queued stream's reply. Returns the stream's final status (or why it did nothing)."""
    # A database away for a moment is waited for while the queued turn's lock lasts.
    stream = retrying_database(
        lambda: _claim(stream_id), for_seconds=settings.MOTHERSHIP_STREAM_LOCK_TTL, what=f"the claim of stream {stream_id}"
    )
    if isinstance(stream, str):
        return stream
    run = _Run(stream)
    run.budget = TurnBudget.of(stream)
    outcome = _execute(run)
    text, last_seq = run.seal_text()
    finalized = stream_finalize_despite_outage(
        stream=stream,
        status=outcome.status,
        reason=outcome.reason,
        text=text,
        last_seq=last_seq,
        usage=run.usage,
        cancel_noticed_at=run.abort_noticed_at if outcome.status == Stream.Status.CANCELLED else None,
        before_terminal=run.write_back,
    )
    return outcome.status if finalized else "already_finalized"


def _claim(stream_id) -> Stream | str:
    """Move a queued stream to ``streaming`` if its lock is still its own; else why not."""
    stream = Stream.objects.select_related("user_message", "chat__workspace__budget").filter(pk=stream_id).first()
    if stream is None or stream.status != Stream.Status.QUEUED:
        return "not_queued"
    # The lock must still be ours (a stream whose lock expired in the queue never starts).
    if not locks.lock_heartbeat(chat_id=stream.chat_id, stream_id=stream.id):
        return "lock_lost"
    started = Stream.objects.filter(pk=stream.pk, status=Stream.Status.QUEUED).update(
        status=Stream.Status.STREAMING, started_at=timezone.now()
    )
    if not started:
        return "not_queued"
    send_logged(
        turn_claimed, sender=Stream, chat_id=stream.chat_id, workspace_id=stream.chat.workspace_id, stream_id=stream.id
    )  # "queued" ends on the tile
    return stream


def _execute(run: _Run) -> _Outcome:
    """Run the model under heartbeat and abort listener, and say how the turn ends."""
    stream = run.stream
    heartbeat = _Heartbeat(
        chat_id=stream.chat_id,
        stream_id=stream.id,
        stop=run.stop,
        fenced=run.fenced,
        on_abort=run.on_abort,
        retake_lock=run.retake_lock,
    )
    heartbeat.start()
    listener = abort.listener()
    try:
        # Checks the abort key too: a stop that arrived while the stream was queued wins here,
        # before a single event is written.
        listener.register(stream.id, run.on_abort)
        run.abort_seen = run.aborted
        if run.abort_seen is None:
            run.emit(
                events.STARTED,
                messageId=str(stream.assistant_message_id),
                # So every tab (not only the sender's) can show the turn from its first event.
                userMessageId=str(stream.user_message_id) if stream.user_message_id else None,
                userMessage=stream.user_message.content if stream.user_message else "",
                provider=stream.provider,
                model=stream.model,
                # Continue: the deltas follow the message's kept text (the page already shows it).
                continued=stream.continues,
            )
            run.generate()
        if run.fenced.is_set():
            return _LOCK_LOST
        run.estimate_usage("".join(run.text) + "".join(run.held), finished=run.abort_seen is None)
        if run.usage != Usage():
            run.emit(events.USAGE, **run.usage.event_fields())
        if run.abort_seen is not None:
            return _Outcome(Stream.Status.CANCELLED, run.abort_seen.reason)
        return _Outcome(Stream.Status.COMPLETED, "")
    except eventlog.Fenced:
        # A newer turn holds the chat (or a stop or the sweeper sealed this one): the seal,
        # conditional on the turn being live, saves this run's text only if nobody sealed it.
        return _LOCK_LOST
    except RedisLost:
        return _Outcome(Stream.Status.CANCELLED, run.aborted.reason) if run.aborted else _REDIS_LOST
    except ProviderError as exc:
        return (
            _Outcome(Stream.Status.CANCELLED, run.aborted.reason) if run.aborted else _Outcome(Stream.Status.FAILED, exc.reason)
        )
    except Exception:
        logger.exception("stream %s failed", stream.id)
        return _Outcome(Stream.Status.FAILED, "internal_error")
    finally:
        heartbeat.done.set()
        listener.unregister(stream.id)
