"""Seal a turn exactly once: in the database first, then announced (terminal event, lock, signal).

The conditional status update makes exactly one finalizer win (worker, cancel or sweeper);
only the winner writes the message, emits the terminal event and frees the lock.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Concat
from django.utils import timezone

from chats.models import Chat, Message
from mothership.infra import metrics
from mothership.infra.database import retrying_database
from mothership.infra.redis import UNAVAILABLE, retrying
from mothership.infra.secrets import mask
from mothership.infra.signals import send_logged
from streams import eventlog, events, locks
from streams.models import Stream
from streams.providers import Usage
from streams.providers.base import with_estimate
from streams.services.history import continued_text, conversation_history, prompt_sent
from streams.services.spending import turn_charge_record
from streams.signals import turn_sealed

logger = logging.getLogger(__name__)

TURN_ENDED_BEFORE_TOOL = "The turn ended before the tool answered."  # a call the turn left open

# How long a worker keeps trying to seal its turn while the database is away (its lock kept).
SEAL_RETRY_SECONDS = 300

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
    before_terminal=None,
    redis_wait: float | None = None,
    tool_calls: list[dict] | None = None,
) -> bool:
    """Seal a live stream once: save the text, clear the marker, then announce it. False if another finalizer won.

    ``tool_calls``: the record of the turn's tool calls, saved on its reply. ``before_terminal(after_failure)`` (the worker's) writes what the log lacks before the terminal
    event; ``redis_wait`` is how long the announcement waits for a Redis that is away (the lock's
    TTL by default).
    """
    reason = mask(reason)[: Stream._meta.get_field("reason").max_length]  # shown on the page, the tile, the API
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
            tool_calls=tool_calls,
        )
        if won:
            transaction.on_commit(
                lambda: _announce(
                    stream=stream,
                    status=status,
                    reason=reason,
                    terminal_seq=terminal_seq,
                    sealed_at=sealed_at,
                    before_terminal=before_terminal,
                    redis_wait=redis_wait,
                )
            )
    return won


def stream_finalize_despite_outage(*, stream: Stream, **seal) -> bool:
    """``stream_finalize`` for the worker that ran the turn: a database that is away (restarting,
    out of connections) is waited for, with back-off, for up to ``SEAL_RETRY_SECONDS``, while the
    turn's lock is kept alive (so no sweeper takes the turn for dead meanwhile), then the turn is
    sealed with its true status. A failure whose commit may have gone through is checked: a turn
    found sealed with this outcome is announced here. A Redis that is away is waited for as long
    (the turn is sealed in the database meanwhile; its terminal event and tile follow).
    """
    seal.setdefault("redis_wait", SEAL_RETRY_SECONDS)
    failed = False

    def keep_the_lock():
        nonlocal failed
        failed = True
        try:
            locks.lock_heartbeat(chat_id=stream.chat_id, stream_id=stream.pk)
        except redis.RedisError:
            pass

    won = retrying_database(
        lambda: stream_finalize(stream=stream, **seal),
        for_seconds=SEAL_RETRY_SECONDS,
        what=f"the seal of stream {stream.pk}",
        on_failure=keep_the_lock,
    )
    if won or not failed:
        return won
    # Lost after a failure: the failed attempt may have committed (its reply was lost).
    row = Stream.objects.filter(pk=stream.pk).first()
    if row is not None and row.status == seal["status"] and locks.lock_owner(chat_id=stream.chat_id) == str(stream.pk):
        _announce(
            stream=row,
            status=row.status,
            reason=row.reason,
            terminal_seq=row.last_seq,
            sealed_at=row.finished_at,
            before_terminal=seal.get("before_terminal"),
            redis_wait=seal["redis_wait"],
        )
        return True
    return False


def _seal(
    *, stream: Stream, status, reason, text, terminal_seq, usage: Usage, from_statuses, sealed_at, cancel_noticed_at, tool_calls
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
    calls = {}
    if tool_calls:  # a continued reply keeps the calls of what it continues
        kept = Message.objects.filter(pk=stream.assistant_message_id).values_list("tool_calls", flat=True).first()
        calls["tool_calls"] = [*(kept or []), *tool_calls] if stream.continues else tool_calls
    # Appended, and usage added: a reply answered again (Retry, Regenerate, Continue) is one
    # message whose usage counts every attempt; a continued one keeps its text before the new.
    Message.objects.filter(pk=stream.assistant_message_id).update(
        **calls,
        content=Concat(F("content"), Value(text)) if stream.continues else text,
        status=_MESSAGE_STATUS[status],
        usage_estimated=Case(When(usage_estimated=True, then=Value(True)), default=Value(usage.estimated)),
        **{name: F(name) + count for name, count in usage.as_dict().items()},
    )
    # CAS: a late finalizer must not clear a newer turn's marker.
    Chat.objects.filter(pk=stream.chat_id, active_stream_id=stream.pk).update(active_stream_id=None)
    # Only the winner charges, in the seal's transaction: a turn is charged once, whoever seals it.
    turn_charge_record(stream=stream, usage=usage)
    return True


def _announce(
    *, stream: Stream, status: str, reason: str, terminal_seq: int, sealed_at, before_terminal=None, redis_wait=None
) -> None:
    metrics.inc(metrics.STREAMS, label=status)  # committed, announced once by its winner: counted once
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
    # Committed already: a Redis that is away is waited for, so the sockets get the terminal
    # event (after what the log lacks) and the lock is freed once it is back.
    failed = False

    def announce_in_redis():
        nonlocal failed
        try:
            if before_terminal is not None:
                before_terminal(failed)
            eventlog.append(chat_id=stream.chat_id, stream_id=stream.pk, event=terminal, fenced=False, release_lock=True)
        except UNAVAILABLE:
            failed = True  # the log may have lost its tail meanwhile (a restart): written again first
            raise

    retrying(
        announce_in_redis,
        for_seconds=settings.MOTHERSHIP_STREAM_LOCK_TTL if redis_wait is None else redis_wait,
        what=f"the seal of stream {stream.pk}",
    )
    # Tiles and warming (sealed_at + interval) hear of it; a failing receiver is logged, never raised.
    send_logged(turn_sealed, sender=Stream, chat_id=stream.chat_id, stream_id=stream.pk, status=status, sealed_at=sealed_at)


class Salvaged(NamedTuple):
    text: str
    last_seq: int
    usage: Usage
    tool_calls: list[dict]

    def seal(self) -> dict:
        """What ``stream_finalize`` saves of it."""
        return self._asdict()


def salvage(stream: Stream, *, open_calls: str = "interrupted") -> Salvaged:
    """What the stream had already published: text, last seq, usage, tool calls (from the event
    log; a call with no result is saved ``open_calls``). A turn whose worker died before its usage
    was written was billed for the text it wrote, and for its prompt: both are estimated, so its
    charge is not zero."""
    log = eventlog.read(stream.pk)
    last_seq = max([e["seq"] for e in log], default=stream.last_seq)
    usage = Usage()
    for event in log:
        if event["type"] == events.USAGE:
            usage = Usage(**event["usage"], estimated=event.get("estimated", False))
    text = eventlog.snapshot_text(log)
    if text and usage == Usage():
        prompt = prompt_sent(conversation_history(stream=stream), continued_text(stream=stream))
        usage = with_estimate(usage, prompt=prompt, text=text, finished=False)
    return Salvaged(
        text, last_seq, usage, eventlog.tool_calls_of(log, open_calls=open_calls, open_content=TURN_ENDED_BEFORE_TOOL)
    )
