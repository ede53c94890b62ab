"""Owner-aware Stop: exactly the stream named, never another turn, and a truthful answer."""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass

from django.conf import settings

from chats.models import Chat
from streams import abort, locks
from streams.models import Stream
from streams.services.finalize import salvage, stream_finalize

logger = logging.getLogger(__name__)

_SETTLE_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class CancelOutcome:
    """The truthful answer to a stop: did *this* stream stop, and did its worker settle it?"""

    cancelled: bool
    stream_id: str
    reason: str | None  # None when cancelled; else "not_active" | "stream_mismatch" | "already_finished"
    settled: bool  # False when the server had to force-finalize from the event log

    def as_dict(self) -> dict:
        return {
            "ok": True,
            "cancelled": self.cancelled,
            "stream_id": self.stream_id,
            "reason": self.reason,
            "settled": self.settled,
        }


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
    requested_at = datetime.datetime.fromtimestamp(request.requested_at, tz=datetime.UTC)
    Stream.objects.filter(pk=stream.pk, cancel_requested_at__isnull=True).update(cancel_requested_at=requested_at)
    # Still queued: the stop wins the race with the start.
    if stream_finalize(
        stream=stream, status=Stream.Status.CANCELLED, reason=reason, text="", last_seq=0, from_statuses=(Stream.Status.QUEUED,)
    ):
        return CancelOutcome(cancelled=True, stream_id=str(stream.pk), reason=None, settled=True)
    if locks.lock_owner(chat_id=chat.pk) == str(stream.pk):
        status = _wait_for_worker(stream)
        if status is not None:
            return _outcome_for(stream, status, settled=True)
    return _force_cancel(stream=stream, reason=reason)


def _wait_for_worker(stream: Stream) -> str | None:
    """The stream's final status once its worker sealed it, or None after the settle bound."""
    deadline = time.monotonic() + settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        status = Stream.objects.filter(pk=stream.pk).values_list("status", flat=True).first()
        if status not in Stream.LIVE_STATUSES:
            return status
        time.sleep(_SETTLE_POLL_SECONDS)
    logger.warning(
        "stream %s did not settle within %.1fs of a stop; force-finalizing", stream.pk, settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT
    )
    return None


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


def _force_cancel(*, stream: Stream, reason: str) -> CancelOutcome:
    # Fence first: with the lock gone the worker can append nothing more, so the log read
    # below is the whole of what it produced and the terminal seq cannot collide.
    locks.lock_release(chat_id=stream.chat_id, stream_id=stream.pk)
    stream.refresh_from_db()
    kept = salvage(stream, open_calls="cancelled")
    if stream_finalize(stream=stream, status=Stream.Status.CANCELLED, reason=reason, **kept.seal()):
        return CancelOutcome(cancelled=True, stream_id=str(stream.pk), reason=None, settled=False)
    # Another finalizer won meanwhile: the worker (which records when it noticed a stop) or another stop.
    status, noticed_at = Stream.objects.filter(pk=stream.pk).values_list("status", "cancel_noticed_at").first() or (None, None)
    return _outcome_for(stream, status, settled=noticed_at is not None)


def streams_cancel_chat(*, chat: Chat, reason: str) -> CancelOutcome | None:
    """Stop whatever turn is live in ``chat`` (close, operators). None when nothing was live."""
    outcome = None
    for stream_id in (
        Stream.objects.filter(chat_id=chat.pk, status__in=Stream.LIVE_STATUSES)
        .order_by("created_at")
        .values_list("pk", flat=True)
    ):
        result = stream_cancel(chat=chat, stream_id=stream_id, reason=reason)
        if result.cancelled or outcome is None:
            outcome = result
    return outcome
