"""JSON Schemas (draft 2020-12) of every message the server sends over ``/ws/``, keyed by its ``type``.

The contract is /work/shared/DESIGN.md; the shapes are those of streams/socket.py (stream
events and resume), mothership/tiles.py (tiles), warming/services.py + warming/socket.py (the
``cache-warming`` surface) and mothership/infra/socket.py (pong, errors). Where the set of
fields is fixed, ``additionalProperties: false`` makes a renamed or unexpected field fail.
"""

from __future__ import annotations

from jsonschema import Draft202012Validator

SURFACE_ID = "cache-warming"

UUID = {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}
NULLABLE_UUID = {"anyOf": [UUID, {"type": "null"}]}
SEQ = {"type": "integer", "minimum": 1}
COUNT = {"type": "integer", "minimum": 0}
EPOCH_MS = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_TEXT = {"type": ["string", "null"]}
DATETIME = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"}  # ISO 8601
STATE = {"enum": ["idle", "streaming", "waiting", "cancelled", "interrupted", "failed"]}


def _closed(type_: str, properties: dict, *, optional: tuple[str, ...] = ()) -> dict:
    """An object of exactly these fields (all required but ``optional``), with ``type`` fixed."""
    props = {"type": {"const": type_}, **properties}
    return {
        "type": "object",
        "properties": props,
        "required": [name for name in props if name not in optional],
        "additionalProperties": False,
    }


def _stream_event(type_: str, *, optional: tuple[str, ...] = (), **fields) -> dict:
    # Every event of a stream carries conversationId, streamId and its gapless seq.
    return _closed(type_, {"conversationId": UUID, "streamId": UUID, "seq": SEQ, **fields}, optional=optional)


def _terminal(type_: str, *, partial: bool, reason: dict) -> dict:
    return _stream_event(type_, message_id=UUID, partial={"const": partial}, reason=reason)


USAGE = {
    "type": "object",
    "properties": {name: COUNT for name in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")},
    "required": ["input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"],
    "additionalProperties": False,
}

BADGE = {  # a tile's warming badge (mothership.tiles.badge_push, mothership.selectors._tile_warming)
    "type": "object",
    "properties": {"enabled": {"type": "boolean"}, "nextWarmAt": EPOCH_MS, "stopReason": NULLABLE_TEXT},
    "required": ["enabled", "nextWarmAt", "stopReason"],
    "additionalProperties": False,
}

WARMING_FIELDS = {  # warming.services.warming_fields
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean"},
        "interval_seconds": {"type": "integer", "minimum": 1},
        "timer": {
            "type": "object",
            "properties": {"nextWarmAt": EPOCH_MS, "lastWarmAt": EPOCH_MS},
            "required": ["nextWarmAt", "lastWarmAt"],
            "additionalProperties": False,
        },
        "lastCachePct": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        "cacheRetention": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        "warmCount": COUNT,
        "stopReason": NULLABLE_TEXT,
        "lastError": NULLABLE_TEXT,
        "lastWarmCost": NULLABLE_NUMBER,
        "costPerHour": NULLABLE_NUMBER,
    },
    "additionalProperties": False,
}
WARMING_FIELDS["required"] = list(WARMING_FIELDS["properties"])

CHAT_SNAPSHOT = {  # the chat detail JSON: the contract says "at least" these fields, so it stays open
    "type": "object",
    "properties": {
        "id": UUID,
        "title": {"type": "string"},
        "active_stream_id": NULLABLE_UUID,
        "liveness": {"enum": ["verified", "unknown"]},
        "state": STATE,
        "updated_at": DATETIME,
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": UUID,
                    "role": {"type": "string"},
                    "content": {"type": "string"},
                    "status": {"type": "string"},
                },
                "required": ["id", "role", "content", "status"],
            },
        },
        "stream": {"type": ["object", "null"]},
    },
    "required": ["id", "title", "active_stream_id", "liveness", "state", "updated_at", "messages", "stream"],
}


def _surface_frame(type_: str) -> dict:
    return _closed(type_, {"surfaceId": {"const": SURFACE_ID}, "conversationId": UUID, "fields": WARMING_FIELDS})


SCHEMAS: dict[str, dict] = {
    # --- stream events (streams.events, streams.services.run / finalize, streams.socket) -----
    "stream.started": _stream_event(
        "stream.started",
        messageId=UUID,
        userMessageId=NULLABLE_UUID,
        userMessage={"type": "string"},
        startedBy={"type": ["integer", "null"]},
        provider={"type": "string", "minLength": 1},
        model={"type": "string", "minLength": 1},
        continued={"type": "boolean"},
        userAttachments={
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "required": ["id", "name", "content_type", "size", "url"]},
        },
        optional=("userAttachments",),
    ),
    "stream.delta": _stream_event("stream.delta", text={"type": "string", "minLength": 1}),
    "stream.usage": _stream_event("stream.usage", usage=USAGE, estimated={"const": True}, optional=("estimated",)),
    "stream.tool_call": _stream_event(
        "stream.tool_call",
        callId={"type": "string", "minLength": 1},
        tool={"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]*\.[^.\s]"},
        arguments={"type": "object"},
    ),
    "stream.tool_approval": _stream_event(
        "stream.tool_approval",
        callId={"type": "string", "minLength": 1},
        tool={"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]*\.[^.\s]"},
        arguments={"type": "object"},
    ),
    "stream.tool_result": _stream_event(
        "stream.tool_result",
        callId={"type": "string", "minLength": 1},
        status={"enum": ["ok", "error", "cancelled", "denied"]},
        content={"type": "string"},
        durationMs={"type": "integer", "minimum": 0},
    ),
    "stream.completed": _terminal("stream.completed", partial=False, reason={"type": "null"}),
    "stream.cancelled": _terminal("stream.cancelled", partial=True, reason={"type": "string", "minLength": 1}),
    "stream.interrupted": _terminal("stream.interrupted", partial=True, reason={"type": "string", "minLength": 1}),
    "stream.failed": _terminal("stream.failed", partial=True, reason={"type": "string", "minLength": 1}),
    # A resume answer, not a logged event: it names the client's cursor (afterSeq), no seq of its own.
    "stream.replay_gap": _closed(
        "stream.replay_gap",
        {"conversationId": UUID, "streamId": UUID, "afterSeq": {"type": "integer", "minimum": 0}, "snapshot": CHAT_SNAPSHOT},
    ),
    # --- tiles (mothership.tiles) --------------------------------------------------------
    "tile": _closed(
        "tile",
        {
            "workspaceId": UUID,
            "conversationId": UUID,
            "title": {"type": "string"},
            "state": STATE,
            "activeStreamId": NULLABLE_UUID,
            "liveness": {"enum": ["verified", "unknown"]},
            "lastMessage": {"type": "string"},
            "updatedAt": DATETIME,
            # {} before the chat has a warming schedule, else the full badge.
            "warming": {"anyOf": [{"type": "object", "maxProperties": 0}, BADGE]},
            # The tile as the dashboard renders it (templates/mothership/_tile.html).
            "html": {"type": "string", "minLength": 1},
        },
    ),
    "tile.warming": _closed("tile.warming", {"workspaceId": UUID, "conversationId": UUID, "warming": BADGE}),
    # --- the cache-warming surface (warming.socket) --------------------------------------
    "surface": _surface_frame("surface"),
    "update": _surface_frame("update"),
    # --- plumbing (mothership.infra.socket, streams.socket, mothership.consumers) ---------
    "subscribed": {
        "oneOf": [
            _closed("subscribed", {"workspaceId": UUID}),
            _closed("subscribed", {"conversationId": UUID}),
        ]
    },
    "unsubscribed": {
        "oneOf": [
            _closed("unsubscribed", {"conversationId": UUID}),
            _closed("unsubscribed", {"surfaceId": {"const": SURFACE_ID}, "conversationId": UUID}),
        ]
    },
    "pong": _closed("pong", {}),
    "error": _closed(
        "error",
        {
            "code": {"type": "string", "pattern": "^[a-z_]+$"},
            "message": {"type": "string", "minLength": 1},
            # Echoed verbatim from the refused message, whatever the client sent.
            "conversationId": {},
            "surfaceId": {},
        },
        optional=("conversationId", "surfaceId"),
    ),
}

VALIDATORS = {name: Draft202012Validator(schema) for name, schema in SCHEMAS.items()}


def schema_errors(frame: dict) -> list[str]:
    """Why ``frame`` breaks the schema of its type (empty when it conforms)."""
    validator = VALIDATORS.get(frame.get("type") if isinstance(frame, dict) else None)
    if validator is None:
        return [f"no schema for a frame of type {frame.get('type')!r}" if isinstance(frame, dict) else "not an object"]
    return [f"{'/'.join(map(str, e.absolute_path)) or '<frame>'}: {e.message}" for e in validator.iter_errors(frame)]
