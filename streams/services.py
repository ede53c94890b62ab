"""Every write to streams: start a turn, run it in the worker, finalize it."""

from __future__ import annotations

import datetime
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chats.models import Chat, Message
from chats.tiles import tile_push
from streams import abort, eventlog, events, locks
from streams.models import Stream
from streams.providers import ProviderError, TextDelta, Usage, get_provider

logger = logging.getLogger(__name__)


class StreamConflict(Exception):
    """A stream is already live in this chat."""

    def __init__(self, active_stream_id):
        super().__init__("A reply is already streaming in this chat; stop it or wait for it to finish.")
        self.active_stream_id = active_stream_id


@dataclass(frozen=True)
class StartedTurn:
    stream: Stream
    user_message: Message
    assistant_message: Message


def stream_start(*, chat: Chat, content: str) -> StartedTurn:
    """Create the user message, the stream and the assistant message; take the liveness lock.

    The marker is set in the same transaction that creates the stream, and the lock is taken
    before it commits, so a queued stream is alive to every reader. The task is enqueued only
    after commit.
    """
    stream_id = uuid.uuid4()
    provider = get_provider()
    lock_taken = False
    try:
        with transaction.atomic():
            locked = Chat.objects.select_for_update().get(pk=chat.pk)
            owner = locks.lock_owner(chat_id=chat.pk)
            if owner is not None:
                raise StreamConflict(owner)
            now = timezone.now()
            user_message = Message.objects.create(chat=locked, role=Message.Role.USER, content=content)
            assistant_message = Message.objects.create(chat=locked, role=Message.Role.ASSISTANT, content="", status=Message.Status.PARTIAL)
            stream = Stream.objects.create(
                id=stream_id,
                chat=locked,
                user_message=user_message,
                assistant_message=assistant_message,
                provider=provider.name,
                model=provider.model,
            )
            Message.objects.filter(pk__in=[user_message.pk, assistant_message.pk]).update(stream=stream)
            if not locks.lock_acquire(chat_id=chat.pk, stream_id=stream_id):
                raise StreamConflict(locks.lock_owner(chat_id=chat.pk))
            lock_taken = True
            # A stale marker (its lock is gone) is simply replaced; the sweeper finalizes that stream.
            Chat.objects.filter(pk=chat.pk).update(active_stream_id=stream_id, updated_at=now, closed_at=None)
            transaction.on_commit(lambda: _enqueue(stream_id))
            transaction.on_commit(lambda: tile_push(chat_id=chat.pk))  # the tile turns yellow everywhere
    except BaseException:
        if lock_taken:
            locks.lock_release(chat_id=chat.pk, stream_id=stream_id)
        raise
    user_message.stream_id = assistant_message.stream_id = stream_id
    return StartedTurn(stream=stream, user_message=user_message, assistant_message=assistant_message)


def _enqueue(stream_id) -> None:
    from streams.tasks import run_stream

    run_stream.delay(str(stream_id))


def conversation_history(*, stream: Stream) -> list[dict]:
    """What the model sees: every earlier message with text, then this turn's user message."""
    rows = (
        Message.objects.filter(chat_id=stream.chat_id, created_at__lte=stream.user_message.created_at)
        .exclude(pk=stream.assistant_message_id)
        .exclude(content="")
        .order_by("created_at", "id")
        .values("role", "content")
    )
    return [{"role": r["role"], "content": r["content"]} for r in rows]


# --- The worker side --------------------------------------------------------------------

_END = object()
_ABORT = object()
_DRAIN_AFTER_STOP = 0.2  # seconds: how long a stopped model's last words are waited for


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

    def _produce(self, provider, messages, out: queue.Queue) -> None:
        try:
            for item in provider.stream(messages=messages, stop=self.stop):
                out.put(item)
        except BaseException as exc:  # forwarded to the run loop, which decides the outcome
            out.put(exc)
        finally:
            # Was the model cut short by a stop? Written before _END, read after it.
            self.cut_short = self.stop.is_set()
            out.put(_END)

    def generate(self) -> None:
        """Stream the provider's deltas, coalesced into frames of ``MOTHERSHIP_DELTA_FLUSH_MS``.

        On a stop, what the model already sent (deltas, its usage) is drained for at most
        ``_DRAIN_AFTER_STOP`` seconds and kept; a model that does not return in that time is
        not waited for.
        """
        provider = get_provider()
        items = self._items
        producer = threading.Thread(target=self._produce, args=(provider, conversation_history(stream=self.stream), items), daemon=True)
        producer.start()
        flush_after = settings.MOTHERSHIP_DELTA_FLUSH_MS / 1000.0
        buffer: list[str] = []
        deadline = 0.0
        drain_until: float | None = None
        ended = False
        try:
            while True:
                waits = ([deadline] if buffer else []) + ([drain_until] if drain_until is not None else [])
                timeout = max(0.0, min(waits) - time.monotonic()) if waits else None
                try:
                    item = items.get(timeout=timeout)
                except queue.Empty:
                    if drain_until is not None and time.monotonic() >= drain_until:
                        break
                    self._flush(buffer)
                    continue
                if item is _ABORT:
                    drain_until = time.monotonic() + _DRAIN_AFTER_STOP
                    continue
                if item is _END:
                    ended = True
                    break
                if isinstance(item, BaseException):
                    self._flush(buffer)  # what the model produced before the error is kept
                    raise item
                if isinstance(item, TextDelta):
                    if not buffer:
                        deadline = time.monotonic() + flush_after
                    buffer.append(item.text)
                    if flush_after == 0 or time.monotonic() >= deadline:
                        self._flush(buffer)
                elif isinstance(item, Usage):
                    self.usage = item
            # Decided here, once: a stop that lands after the model finished on its own changes nothing.
            self.abort_seen = self.aborted if (not ended or self.cut_short) else None
            self._flush(buffer)
        finally:
            self.stop.set()
            if ended:
                producer.join(timeout=5)

    def _flush(self, buffer: list[str]) -> None:
        if not buffer:
            return
        text = "".join(buffer)
        buffer.clear()
        if self.stream.first_delta_at is None:
            self.stream.first_delta_at = timezone.now()
        self.emit(events.DELTA, text=text)
        self.text.append(text)


def stream_run(*, stream_id) -> str:
    """Generate a queued stream's reply. Returns the stream's final status (or why it did nothing)."""
    stream = Stream.objects.select_related("user_message").filter(pk=stream_id).first()
    if stream is None or stream.status != Stream.Status.QUEUED:
        return "not_queued"
    # Claim: the lock must still be ours (a stream whose lock expired in the queue never starts).
    if not locks.lock_heartbeat(chat_id=stream.chat_id, stream_id=stream.id):
        return "lock_lost"
    started = Stream.objects.filter(pk=stream.pk, status=Stream.Status.QUEUED).update(
        status=Stream.Status.STREAMING, started_at=timezone.now()
    )
    if not started:
        return "not_queued"
    run = _Run(stream)
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
            return "fenced"
        if run.usage != Usage():
            run.emit(events.USAGE, usage=run.usage.as_dict())
        if run.abort_seen is not None:
            status, reason = Stream.Status.CANCELLED, run.abort_seen.reason
        else:
            status, reason = Stream.Status.COMPLETED, ""
    except eventlog.Fenced:
        return "fenced"
    except ProviderError as exc:
        status, reason = (Stream.Status.CANCELLED, run.aborted.reason) if run.aborted else (Stream.Status.FAILED, exc.reason)
    except Exception:
        logger.exception("stream %s failed", stream.id)
        status, reason = Stream.Status.FAILED, "internal_error"
    finally:
        heartbeat.done.set()
        listener.unregister(stream.id)
    finalized = stream_finalize(
        stream=stream,
        status=status,
        reason=reason,
        text="".join(run.text),
        last_seq=run.seq,
        usage=run.usage,
        cancel_noticed_at=run.abort_noticed_at if run.abort_seen else None,
    )
    return status if finalized else "already_finalized"


_MESSAGE_STATUS = {
    Stream.Status.COMPLETED: Message.Status.COMPLETE,
    Stream.Status.CANCELLED: Message.Status.CANCELLED,
    Stream.Status.INTERRUPTED: Message.Status.INTERRUPTED,
    Stream.Status.FAILED: Message.Status.FAILED,
}


def stream_finalize(
    *,
    stream: Stream,
    status: str,
    reason: str,
    text: str,
    last_seq: int,
    usage: Usage | None = None,
    from_statuses=Stream.LIVE_STATUSES,
    cancel_noticed_at=None,
) -> bool:
    """Seal a live stream once: save the text, clear the marker, emit the terminal event, free the lock.

    The conditional status update makes exactly one finalizer win (worker, cancel or sweeper);
    only the winner writes the message, the terminal event and releases the lock.
    """
    usage = usage or Usage()
    reason = reason[: Stream._meta.get_field("reason").max_length]
    terminal_seq = last_seq + 1
    sealed_at = timezone.now()
    with transaction.atomic():
        extra = {"cancel_noticed_at": cancel_noticed_at} if cancel_noticed_at else {}
        won = Stream.objects.filter(pk=stream.pk, status__in=from_statuses).update(
            status=status,
            reason=reason,
            last_seq=terminal_seq,
            finished_at=sealed_at,
            first_delta_at=stream.first_delta_at,
            **extra,
        )
        if not won:
            return False
        Message.objects.filter(pk=stream.assistant_message_id).update(
            content=text,
            status=_MESSAGE_STATUS[status],
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
        )
        # CAS: a late finalizer must not clear a newer turn's marker.
        Chat.objects.filter(pk=stream.chat_id, active_stream_id=stream.pk).update(active_stream_id=None)
    terminal = events.stream_event(
        type=events.TERMINAL_BY_STATUS[status],
        chat_id=stream.chat_id,
        stream_id=stream.pk,
        seq=terminal_seq,
        message_id=str(stream.assistant_message_id),
        partial=status != Stream.Status.COMPLETED,
        reason=reason or None,
    )
    # The winner of the DB update is the finalizer of record: its terminal event is unfenced.
    eventlog.append(chat_id=stream.chat_id, stream_id=stream.pk, event=terminal, fenced=False)
    locks.lock_release(chat_id=stream.chat_id, stream_id=stream.pk)
    tile_push(chat_id=stream.chat_id)
    try:
        from warming.dispatch import warming_on_turn_sealed

        warming_on_turn_sealed(chat_id=stream.chat_id, sealed_at=sealed_at)  # next warm: sealed_at + interval
    except Exception:  # the turn is sealed; a failed reschedule is retried by the next turn or warm
        logger.exception("could not reschedule warming after stream %s", stream.pk)
    return True


# --- Stop: owner-aware cancel -------------------------------------------------------------


@dataclass(frozen=True)
class CancelOutcome:
    """The truthful answer to a stop: did *this* stream stop, and did its worker settle it?"""

    cancelled: bool
    stream_id: str
    reason: str | None  # None when cancelled; else "not_active" | "stream_mismatch" | "already_finished"
    settled: bool  # False when the server had to force-finalize from the event log

    def as_dict(self) -> dict:
        return {"ok": True, "cancelled": self.cancelled, "stream_id": self.stream_id, "reason": self.reason, "settled": self.settled}


_SETTLE_POLL_SECONDS = 0.02


def _not_cancelled(*, chat: Chat, stream_id, stream: Stream | None) -> CancelOutcome:
    if stream is None:
        reason = "not_active"  # no such stream in this chat
    elif (owner := locks.lock_owner(chat_id=chat.pk)) is not None and owner != str(stream_id):
        reason = "stream_mismatch"  # it is over and a different turn runs now: that one is left alone
    else:
        reason = "already_finished"
    return CancelOutcome(cancelled=False, stream_id=str(stream_id), reason=reason, settled=True)


def _outcome_for(stream: Stream, status: str, *, settled: bool) -> CancelOutcome:
    if status == Stream.Status.CANCELLED:
        return CancelOutcome(cancelled=True, stream_id=str(stream.pk), reason=None, settled=settled)
    return CancelOutcome(cancelled=False, stream_id=str(stream.pk), reason="already_finished", settled=True)


def stream_cancel(*, chat: Chat, stream_id, reason: str = "user") -> CancelOutcome:
    """Stop exactly the stream ``stream_id`` of ``chat`` if it is live; never another turn.

    The stop goes to the worker through Redis (key + publish). A stream still queued is
    finalized here at once (the worker will find it no longer queued and never start). A
    streaming one is given ``MOTHERSHIP_CANCEL_SETTLE_TIMEOUT`` to save its text and emit
    ``stream.cancelled``; after that, or at once when no worker holds its lock, the server
    fences the worker (frees the lock) and finalizes from the event log itself.
    """
    stream = Stream.objects.filter(pk=stream_id, chat_id=chat.pk).first()
    if stream is None or not stream.is_live:
        return _not_cancelled(chat=chat, stream_id=stream_id, stream=stream)
    request = abort.abort_request(stream_id=stream.pk, reason=reason)
    requested_at = datetime.datetime.fromtimestamp(request.requested_at, tz=datetime.timezone.utc)
    Stream.objects.filter(pk=stream.pk, cancel_requested_at__isnull=True).update(cancel_requested_at=requested_at)
    # Still queued: the stop wins the race with the start.
    if stream_finalize(stream=stream, status=Stream.Status.CANCELLED, reason=reason, text="", last_seq=0, from_statuses=(Stream.Status.QUEUED,)):
        return CancelOutcome(cancelled=True, stream_id=str(stream.pk), reason=None, settled=True)
    if locks.lock_owner(chat_id=chat.pk) == str(stream.pk):
        deadline = time.monotonic() + settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            status = Stream.objects.filter(pk=stream.pk).values_list("status", flat=True).first()
            if status not in Stream.LIVE_STATUSES:
                return _outcome_for(stream, status, settled=True)
            time.sleep(_SETTLE_POLL_SECONDS)
        logger.warning("stream %s did not settle within %.1fs of a stop; force-finalizing", stream.pk, settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT)
    return _force_cancel(stream=stream, reason=reason)


def _force_cancel(*, stream: Stream, reason: str) -> CancelOutcome:
    # Fence first: with the lock gone the worker can append nothing more, so the log read
    # below is the whole of what it produced and the terminal seq cannot collide.
    locks.lock_release(chat_id=stream.chat_id, stream_id=stream.pk)
    stream.refresh_from_db()
    text, last_seq, usage = _salvage(stream)
    if stream_finalize(stream=stream, status=Stream.Status.CANCELLED, reason=reason, text=text, last_seq=last_seq, usage=usage):
        return CancelOutcome(cancelled=True, stream_id=str(stream.pk), reason=None, settled=False)
    status = Stream.objects.filter(pk=stream.pk).values_list("status", flat=True).first()
    return _outcome_for(stream, status, settled=True)


def streams_cancel_chat(*, chat: Chat, reason: str) -> CancelOutcome | None:
    """Stop whatever turn is live in ``chat`` (close, operators). None when nothing was live."""
    outcome = None
    for stream_id in Stream.objects.filter(chat_id=chat.pk, status__in=Stream.LIVE_STATUSES).order_by("created_at").values_list("pk", flat=True):
        result = stream_cancel(chat=chat, stream_id=stream_id, reason=reason)
        if result.cancelled or outcome is None:
            outcome = result
    return outcome


# --- Orphans: the sweeper -----------------------------------------------------------------

SWEEP_BATCH = 500


def _salvage(stream: Stream) -> tuple[str, int, Usage]:
    """What the dead worker had already published: text, last seq, usage (from the event log)."""
    log = eventlog.read(stream.pk)
    last_seq = max([e["seq"] for e in log], default=stream.last_seq)
    usage = Usage()
    for event in log:
        if event["type"] == events.USAGE:
            usage = Usage(**event["usage"])
    return eventlog.snapshot_text(log), last_seq, usage


def stream_interrupt_orphan(*, stream: Stream) -> bool:
    """Finalize a stream whose worker is gone: ``interrupted``, its produced text kept."""
    text, last_seq, usage = _salvage(stream)
    reason = "never_started" if stream.status == Stream.Status.QUEUED else "worker_lost"
    return stream_finalize(stream=stream, status=Stream.Status.INTERRUPTED, reason=reason, text=text, last_seq=last_seq, usage=usage)


def streams_sweep(*, stream_ids=None) -> dict:
    """Finalize, for good, every live stream whose chat's lock it no longer owns.

    One MGET per batch; a stream whose lock is still its own is alive (queued ones too).
    Lock errors raise: the sweeper never guesses that a stream is dead.
    """
    # A stream whose stop is being settled (its lock may already be freed by the canceller) is
    # the canceller's to finalize; it is swept only if that stop was abandoned long ago.
    stopping_since = timezone.now() - datetime.timedelta(seconds=settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT + 30)
    qs = (
        Stream.objects.filter(status__in=Stream.LIVE_STATUSES)
        .exclude(cancel_requested_at__gt=stopping_since)
        .order_by("created_at")
    )
    if stream_ids is not None:
        qs = qs.filter(pk__in=list(stream_ids))
    report = {"checked": 0, "alive": 0, "interrupted": [], "already_finalized": 0}
    last_created = None
    while True:
        batch_qs = qs if last_created is None else qs.filter(created_at__gt=last_created)
        batch = list(batch_qs[:SWEEP_BATCH])
        if not batch:
            break
        last_created = batch[-1].created_at
        owners = locks.lock_owners({s.chat_id for s in batch})
        for stream in batch:
            report["checked"] += 1
            if owners.get(str(stream.chat_id)) == str(stream.pk):
                report["alive"] += 1
            elif stream_interrupt_orphan(stream=stream):
                report["interrupted"].append(str(stream.pk))
            else:
                report["already_finalized"] += 1
        if len(batch) < SWEEP_BATCH:
            break
    # Markers that point at a stream that is no longer live (finalized elsewhere, or never
    # existed) and whose lock is gone. Live streams are few, so this scans from them.
    live_streams = Stream.objects.filter(status__in=Stream.LIVE_STATUSES).values("pk")
    marked = list(
        Chat.objects.filter(active_stream_id__isnull=False).exclude(active_stream_id__in=live_streams).values_list("pk", "active_stream_id")[:SWEEP_BATCH]
    )
    report["markers_cleared"] = 0
    if marked:
        from chats.services import chat_markers_repair

        owners = locks.lock_owners(pk for pk, _ in marked)
        report["markers_cleared"] = chat_markers_repair(repairs={pk: (marker, None) for pk, marker in marked if owners.get(str(pk)) is None})
    if report["interrupted"]:
        logger.warning("sweeper interrupted %d orphaned streams", len(report["interrupted"]))
    return report
