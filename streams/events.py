"""Stream event types and their dicts (they travel on ``mothership.infra.groups.chat_group``)."""

from __future__ import annotations

STARTED = "stream.started"
DELTA = "stream.delta"
USAGE = "stream.usage"
COMPLETED = "stream.completed"
CANCELLED = "stream.cancelled"
INTERRUPTED = "stream.interrupted"
FAILED = "stream.failed"
REPLAY_GAP = "stream.replay_gap"

TERMINAL_TYPES = frozenset({COMPLETED, CANCELLED, INTERRUPTED, FAILED})
TERMINAL_BY_STATUS = {
    "completed": COMPLETED,
    "cancelled": CANCELLED,
    "interrupted": INTERRUPTED,
    "failed": FAILED,
}

# Channel-layer message type; the consumer's ``stream_event`` handler forwards it.
GROUP_MESSAGE_TYPE = "stream.event"


def stream_event(*, type: str, chat_id, stream_id, seq: int, **fields) -> dict:
    return {"type": type, "conversationId": str(chat_id), "streamId": str(stream_id), "seq": seq, **fields}


def group_message(event: dict) -> dict:
    return {"type": GROUP_MESSAGE_TYPE, "event": event}
