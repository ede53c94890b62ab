"""Seal a turn exactly once: in the database first, then announced (terminal event, lock, signal).

The conditional status update makes exactly one finalizer win (worker, cancel or sweeper);
only the winner writes the message, emits the terminal event and frees the lock.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chats.models import Chat, Message
from mothership.infra.redis import retrying
from mothership.infra.signals import send_logged
from streams import eventlog, events, locks
from streams.models import Stream
from streams.providers import Usage
from streams.signals import turn_sealed

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
    """Seal a live stream once: save the text, clear the marker, then announce it. False if another finalizer won."""
    reason = reason[: Stream._meta.get_field("reason").max_length]
    terminal_seq = last_seq + 1
    sealed_at = timezone.now()
    with transaction.atomic():
        won = _seal(
            stream=stream,
            status=status,
            reason=reason,
            text=text,
            terminal_seq=terminal_seq,
            usage=usage or Usage(),
            from_statuses=from_statuses,
            sealed_at=sealed_at,
            cancel_noticed_at=cancel_noticed_at,
        )
        if won:
            transaction.on_commit(
                lambda: _announce(stream=stream, status=status, reason=reason, terminal_seq=terminal_seq, sealed_at=sealed_at)
            )
    return won


def _seal(
    *, stream: Stream, status, reason, text, terminal_seq, usage: Usage, from_statuses, sealed_at, cancel_noticed_at
) -> bool:
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
    Message.objects.filter(pk=stream.assistant_message_id).update(content=text, status=_MESSAGE_STATUS[status], **usage.as_dict())
    # CAS: a late finalizer must not clear a newer turn's marker.
    Chat.objects.filter(pk=stream.chat_id, active_stream_id=stream.pk).update(active_stream_id=None)
    return True


def _announce(*, stream: Stream, status: str, reason: str, terminal_seq: int, sealed_at) -> None:
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
    # Committed already: a Redis away for a moment is waited for (up to the lock's TTL), so the
    # sockets get the terminal event and the lock is freed once it is back.
    def announce_in_redis():
        eventlog.append(chat_id=stream.chat_id, stream_id=stream.pk, event=terminal, fenced=False)
        locks.lock_release(chat_id=stream.chat_id, stream_id=stream.pk)

    retrying(announce_in_redis, for_seconds=settings.MOTHERSHIP_STREAM_LOCK_TTL, what=f"the seal of stream {stream.pk}")
    # Tiles and warming (sealed_at + interval) hear of it; a failing receiver is logged, never raised.
    send_logged(turn_sealed, sender=Stream, chat_id=stream.chat_id, stream_id=stream.pk, status=status, sealed_at=sealed_at)


def salvage(stream: Stream) -> tuple[str, int, Usage]:
    """What the stream had already published: text, last seq, usage (from the event log)."""
    log = eventlog.read(stream.pk)
    last_seq = max([e["seq"] for e in log], default=stream.last_seq)
    usage = Usage()
    for event in log:
        if event["type"] == events.USAGE:
            usage = Usage(**event["usage"])
    return eventlog.snapshot_text(log), last_seq, usage
