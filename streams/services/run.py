"""The worker's side of a turn: claim the queued stream, stream the model's deltas, seal it.

The heartbeat keeps the lock; a stop reaches the run loop through the abort listener; every
event is appended through the fenced event log, so a run that lost its lock writes nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.utils import timezone

from chats.selectors import conversation_prefix
from streams import abort, eventlog, events, locks
from streams.models import Stream
from streams.providers import ProviderError, TextDelta, Usage, get_provider
from streams.services.finalize import stream_finalize

logger = logging.getLogger(__name__)

_END = object()
_ABORT = object()
_DRAIN_AFTER_STOP = 0.2  # seconds: how long a stopped model's last words are waited for


def conversation_history(*, stream: Stream) -> list[dict]:
    """What the model sees for this turn: the conversation's prefix up to its user message."""
    return conversation_prefix(chat_id=stream.chat_id, until=stream.user_message, exclude_ids=[stream.assistant_message_id])


class _Heartbeat(threading.Thread):
    """Keeps the liveness lock; on loss of ownership, fences the run and stops generation."""

    def __init__(self, *, chat_id, stream_id, stop: threading.Event, fenced: threading.Event, on_abort=None):
        super().__init__(name=f"heartbeat-{stream_id}", daemon=True)
        self.chat_id, self.stream_id, self.stop_generation, self.fenced = chat_id, stream_id, stop, fenced
        self.on_abort = on_abort
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(settings.MOTHERSHIP_STREAM_HEARTBEAT):
            try:
                if not locks.lock_heartbeat(chat_id=self.chat_id, stream_id=self.stream_id):
                    logger.warning("stream %s lost its lock; fencing", self.stream_id)
                    self.fenced.set()
                    self.stop_generation.set()
                    return
                # Belt and braces for a lost publish (a half-open pub/sub socket): the key stays.
                if self.on_abort is not None and (request := abort.abort_pending(stream_id=self.stream_id)):
                    self.on_abort(request)
            except redis.RedisError:
                # The lock may still be ours; the next beat (or its expiry) decides.
                logger.exception("heartbeat failed for stream %s", self.stream_id)


class _Frames:
    """Deltas coalesced into frames of ``MOTHERSHIP_DELTA_FLUSH_MS``: neither Redis nor the socket pays per token."""

    def __init__(self, flush: Callable[[str], None]):
        self.flush_after = settings.MOTHERSHIP_DELTA_FLUSH_MS / 1000.0
        self.buffer: list[str] = []
        self.deadline = 0.0
        self._flush = flush

    def add(self, text: str) -> None:
        if not self.buffer:
            self.deadline = time.monotonic() + self.flush_after
        self.buffer.append(text)
        if self.flush_after == 0 or time.monotonic() >= self.deadline:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            text = "".join(self.buffer)
            self.buffer.clear()
            self._flush(text)


class _Run:
    def __init__(self, stream: Stream):
        self.stream = stream
        self.chat_id = stream.chat_id
        self.seq = 0
        self.text: list[str] = []
        self.usage = Usage()
        self.stop = threading.Event()
        self.fenced = threading.Event()
        self.aborted: abort.AbortRequest | None = None
        self.abort_seen: abort.AbortRequest | None = None
        self.abort_noticed_at = None
        self.cut_short = False
        self._items: queue.Queue = queue.Queue()

    def on_abort(self, request: abort.AbortRequest) -> None:
        """Called by the abort listener's thread: stop the model and wake the run loop now."""
        if self.aborted is not None:
            return
        self.abort_noticed_at = timezone.now()
        self.aborted = request
        self.stop.set()
        self._items.put(_ABORT)

    def emit(self, type: str, **fields) -> None:
        if self.fenced.is_set():
            raise eventlog.Fenced(str(self.stream.id))
        event = events.stream_event(type=type, chat_id=self.chat_id, stream_id=self.stream.id, seq=self.seq + 1, **fields)
        try:
            eventlog.append(chat_id=self.chat_id, stream_id=self.stream.id, event=event)
        except eventlog.Fenced:
            self.fenced.set()
            self.stop.set()
            raise
        self.seq += 1

    def emit_delta(self, text: str) -> None:
        if self.stream.first_delta_at is None:
            self.stream.first_delta_at = timezone.now()
        self.emit(events.DELTA, text=text)
        self.text.append(text)

    def _produce(self, provider, messages) -> None:
        try:
            for item in provider.stream(messages=messages, stop=self.stop):
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
        not waited for.
        """
        producer = threading.Thread(
            target=self._produce, args=(get_provider(), conversation_history(stream=self.stream)), daemon=True
        )
        producer.start()
        frames = _Frames(self.emit_delta)
        ended = False
        try:
            ended = self._consume(frames)
            # Decided here, once: a stop that lands after the model finished on its own changes nothing.
            self.abort_seen = self.aborted if (not ended or self.cut_short) else None
            frames.flush()
        finally:
            self.stop.set()
            if ended:
                producer.join(timeout=5)

    def _consume(self, frames: _Frames) -> bool:
        """The run loop. True when the model ended on its own, False when a stop's drain ran out."""
        drain_until: float | None = None
        while True:
            waits = ([frames.deadline] if frames.buffer else []) + ([drain_until] if drain_until is not None else [])
            timeout = max(0.0, min(waits) - time.monotonic()) if waits else None
            try:
                item = self._items.get(timeout=timeout)
            except queue.Empty:
                if drain_until is not None and time.monotonic() >= drain_until:
                    return False
                frames.flush()
                continue
            if item is _ABORT:
                drain_until = time.monotonic() + _DRAIN_AFTER_STOP
            elif item is _END:
                return True
            elif isinstance(item, BaseException):
                frames.flush()  # what the model produced before the error is kept
                raise item
            elif isinstance(item, TextDelta):
                frames.add(item.text)
            elif isinstance(item, Usage):
                self.usage = item


@dataclass(frozen=True)
class _Outcome:
    status: str
    reason: str


def stream_run(*, stream_id) -> str:
    """Generate a queued stream's reply. Returns the stream's final status (or why it did nothing)."""
    stream = _claim(stream_id)
    if isinstance(stream, str):
        return stream
    run = _Run(stream)
    outcome = _execute(run)
    if outcome is None:
        return "fenced"
    finalized = stream_finalize(
        stream=stream,
        status=outcome.status,
        reason=outcome.reason,
        text="".join(run.text),
        last_seq=run.seq,
        usage=run.usage,
        cancel_noticed_at=run.abort_noticed_at if outcome.status == Stream.Status.CANCELLED else None,
    )
    return outcome.status if finalized else "already_finalized"


def _claim(stream_id) -> Stream | str:
    """Move a queued stream to ``streaming`` if its lock is still its own; else why not."""
    stream = Stream.objects.select_related("user_message").filter(pk=stream_id).first()
    if stream is None or stream.status != Stream.Status.QUEUED:
        return "not_queued"
    # The lock must still be ours (a stream whose lock expired in the queue never starts).
    if not locks.lock_heartbeat(chat_id=stream.chat_id, stream_id=stream.id):
        return "lock_lost"
    started = Stream.objects.filter(pk=stream.pk, status=Stream.Status.QUEUED).update(
        status=Stream.Status.STREAMING, started_at=timezone.now()
    )
    return stream if started else "not_queued"


def _execute(run: _Run) -> _Outcome | None:
    """Run the model under heartbeat and abort listener. None when fenced (nothing more may be written)."""
    stream = run.stream
    heartbeat = _Heartbeat(chat_id=stream.chat_id, stream_id=stream.id, stop=run.stop, fenced=run.fenced, on_abort=run.on_abort)
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
            )
            run.generate()
        if run.fenced.is_set():
            return None
        if run.usage != Usage():
            run.emit(events.USAGE, usage=run.usage.as_dict())
        if run.abort_seen is not None:
            return _Outcome(Stream.Status.CANCELLED, run.abort_seen.reason)
        return _Outcome(Stream.Status.COMPLETED, "")
    except eventlog.Fenced:
        return None
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
