"""The worker's side of a turn: claim the queued stream, run it (``streams.services.turn``), seal it.

The heartbeat keeps the lock; a stop reaches the turn through the abort listener; every event is
appended through the fenced event log, so a run that lost its lock writes nothing more to the log
while it runs. Whatever ends the run, it seals its own turn with every character it received,
unless a stop or the sweeper sealed it first (the seal is a conditional update): a run fenced by a
newer turn ends ``interrupted / lock_lost``, one whose Redis stayed away (or refused writes) for
longer than the lock's TTL while the model ran ends ``interrupted / redis_unavailable``; one whose
model ended is sealed at once with its true outcome, whatever Redis does. The events the log lacks
are written before the terminal event once Redis takes writes again.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from chats.api.serializers import attachment_json
from chats.attachments.selectors import message_attachments
from chats.models import Message
from mothership.infra import logs, statements
from mothership.infra.database import retrying_database
from mothership.infra.prepared import PreparedRead, PreparedStatement
from mothership.infra.signals import send_logged
from streams import abort, eventlog, events, locks, workers
from streams.models import Stream
from streams.providers import ProviderError, Usage
from streams.services.finalize import stream_finalize_despite_outage
from streams.services.spending import TurnBudget
from streams.services.turn import Heartbeat, RedisLost, Turn
from streams.signals import turn_claimed

logger = logging.getLogger(__name__)


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
    logs.bind(chat_id=stream.chat_id, user_id=stream.started_by_id)  # until run_stream's log_context ends
    logger.debug("turn started on %s", stream.model_id)
    turn = Turn(stream, TurnBudget.of(stream))
    outcome = _execute(turn)
    text, last_seq = turn.seal_text()
    finalized = stream_finalize_despite_outage(
        stream=stream,
        status=outcome.status,
        reason=outcome.reason,
        text=text,
        last_seq=last_seq,
        usage=turn.usage,
        cancel_noticed_at=turn.abort_noticed_at if outcome.status == Stream.Status.CANCELLED else None,
        before_terminal=turn.journal.write_back,
        tool_calls=turn.tools.records,
    )
    logger.info(
        "turn %s%s%s",
        outcome.status,
        f" ({outcome.reason})" if outcome.reason else "",
        "" if finalized else ": already finalized by another",
    )
    return outcome.status if finalized else "already_finalized"


def _turn_read(stream_id):
    # Whether the question has files, in the same read: ``stream.started`` looks them up only then.
    question_files = Exists(Message.attachments.through.objects.filter(message_id=OuterRef("user_message_id")))
    return (
        Stream.objects.select_related("user_message", "chat__workspace__budget")
        .annotate(question_files=question_files)
        .filter(pk=stream_id)
    )


# Every turn's first read, compiled once (``mothership.infra.prepared``).
TURN_READ = PreparedRead(_turn_read, kinds=(uuid.UUID,))


def _claimed(stream_id, now) -> statements.Statement:
    return statements.update(
        Stream.objects.filter(pk=stream_id, status=Stream.Status.QUEUED), status=Stream.Status.STREAMING, started_at=now
    )


_CLAIMED = PreparedStatement(_claimed, kinds=(uuid.UUID, datetime.datetime))


def _claim(stream_id) -> Stream | str:
    """Move a queued stream to ``streaming`` if its lock is still its own; else why not."""
    stream = next(iter(TURN_READ.run(stream_id)), None)
    if stream is None or stream.status != Stream.Status.QUEUED:
        return "not_queued"
    # The lock must still be ours (a stream whose lock expired in the queue never starts); from
    # here the lock names this worker, so the sweeper knows the turn is lost the moment it is.
    if not locks.lock_heartbeat(chat_id=stream.chat_id, stream_id=stream.id, worker=workers.current_tag()):
        return "lock_lost"
    if not statements.execute(_CLAIMED.statement(stream.pk, timezone.now())):
        return "not_queued"
    send_logged(
        turn_claimed, sender=Stream, chat_id=stream.chat_id, workspace_id=stream.chat.workspace_id, stream_id=stream.id
    )  # "queued" ends on the tile
    return stream


def _execute(turn: Turn) -> _Outcome:
    """Run the model under heartbeat and abort listener, and say how the turn ends."""
    stream = turn.stream
    heartbeat = Heartbeat(
        chat_id=stream.chat_id,
        stream_id=stream.id,
        stop=turn.stop,
        fenced=turn.fenced,
        on_abort=turn.on_abort,
        retake_lock=turn.journal.retake_lock,
        on_redis_away=turn.journal.redis_was_away,
    )
    heartbeat.start()
    listener = abort.listener()
    try:
        # Checks the abort key too: a stop that arrived while the stream was queued wins here,
        # before a single event is written.
        listener.register(stream.id, turn.on_abort)
        turn.abort_seen = turn.aborted
        if turn.abort_seen is None:
            turn.journal.emit(
                events.STARTED,
                messageId=str(stream.assistant_message_id),
                # So every tab (not only the sender's) can show the turn from its first event.
                userMessageId=str(stream.user_message_id) if stream.user_message_id else None,
                userMessage=stream.user_message.content if stream.user_message else "",
                # Its files (name, size, links), so every tab shows them with it.
                **_user_attachments(stream),
                # Who sent it: a page offers Stop to its sender (and to the chat's creator and owners).
                startedBy=stream.started_by_id,
                provider=stream.provider,
                model=stream.model,
                # Continue: the deltas follow the message's kept text (the page already shows it).
                continued=stream.continues,
            )
            turn.generate()
        if turn.fenced.is_set():
            return _LOCK_LOST
        turn.estimate_usage(turn.journal.received_text(), finished=turn.abort_seen is None)
        if turn.usage != Usage():
            turn.journal.emit_usage(turn.usage)
        if turn.abort_seen is not None:
            return _Outcome(Stream.Status.CANCELLED, turn.abort_seen.reason)
        return _Outcome(Stream.Status.COMPLETED, "")
    except eventlog.Fenced:
        # A newer turn holds the chat (or a stop or the sweeper sealed this one): the seal,
        # conditional on the turn being live, saves this run's text only if nobody sealed it.
        return _LOCK_LOST
    except RedisLost:
        return _Outcome(Stream.Status.CANCELLED, turn.aborted.reason) if turn.aborted else _REDIS_LOST
    except ProviderError as exc:
        return (
            _Outcome(Stream.Status.CANCELLED, turn.aborted.reason) if turn.aborted else _Outcome(Stream.Status.FAILED, exc.reason)
        )
    except Exception:
        logger.exception("stream %s failed", stream.id)
        return _Outcome(Stream.Status.FAILED, "internal_error")
    finally:
        heartbeat.done.set()
        listener.unregister(stream.id)


def _user_attachments(stream) -> dict:
    """``userAttachments`` of the start event, when the question carries files (one indexed read)."""
    if not stream.user_message_id or not getattr(stream, "question_files", True):
        return {}
    files = message_attachments(message_ids=[stream.user_message_id]).get(stream.user_message_id)
    return {"userAttachments": [attachment_json(a) for a in files]} if files else {}
