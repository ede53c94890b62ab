"""Stream event types and their dicts (they travel on ``mothership.infra.groups.chat_group``)."""

from __future__ import annotations

import json

STARTED = "stream.started"
DELTA = "stream.delta"
USAGE = "stream.usage"
COMPLETED = "stream.completed"
CANCELLED = "stream.cancelled"
INTERRUPTED = "stream.interrupted"
FAILED = "stream.failed"
REPLAY_GAP = "stream.replay_gap"
# A tool call and its result (``streams.services.turn``), between a model's rounds.
TOOL_CALL = "stream.tool_call"
TOOL_RESULT = "stream.tool_result"
TOOL_APPROVAL = "stream.tool_approval"  # the call waits for a person (POST …/tool-calls/<callId>/approval)
TOOL_STATUSES = ("ok", "error", "cancelled", "denied")

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


def encode(event: dict) -> str:
    """The event's JSON text: written once by the worker, stored in the log, sent to sockets as is."""
    return json.dumps(event, separators=(",", ":"))


def group_message(event: dict, text: str | None = None) -> dict:
    """The channel-layer message for an event: its JSON text, plus what a socket needs to route it
    (chat, stream, seq), so the web process forwards the text without decoding or re-encoding it."""
    return {
        "type": GROUP_MESSAGE_TYPE,
        "conversationId": event["conversationId"],
        "streamId": event["streamId"],
        "seq": event["seq"],
        "text": encode(event) if text is None else text,
    }


def from_group_message(message: dict) -> dict | None:
    """The event a channel-layer message carries (None for any other message on the group)."""
    return json.loads(message["text"]) if message.get("type") == GROUP_MESSAGE_TYPE else None
