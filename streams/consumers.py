"""The one socket at ``/ws/``: chat subscriptions, resume, and (later) surfaces.

Every client message is validated; a refused one gets ``{"type": "error", "code", "message"}``
echoing ``conversationId`` / ``surfaceId`` when given, and the socket stays open.
"""

from __future__ import annotations

import json
import logging

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chats import selectors
from streams import eventlog, events

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024


class ClientError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@database_sync_to_async
def _is_member(user, chat_id) -> bool:
    return selectors.user_is_member(user=user, chat_id=chat_id)


@database_sync_to_async
def _stream_in_chat(chat_id, stream_id) -> bool:
    from streams.models import Stream

    return Stream.objects.filter(pk=stream_id, chat_id=chat_id).exists()


def _require_uuid(content: dict, field: str) -> str:
    value = content.get(field)
    parsed = selectors.parse_uuid(value) if isinstance(value, str) else None
    if parsed is None:
        raise ClientError("bad_request", f"{field} must be a UUID string.")
    return str(parsed)


class MothershipConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user = user
        self.subscriptions: set[str] = set()
        # Per stream: the highest seq this socket has sent (no duplicate, no gap).
        self.cursors: dict[str, int] = {}
        await self.accept()

    async def disconnect(self, code):
        # Closing a socket never stops a stream: only leave the groups.
        for chat_id in getattr(self, "subscriptions", set()):
            await self.channel_layer.group_discard(events.chat_group(chat_id), self.channel_name)

    # --- client → server ---------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            await self.send_error({}, "bad_frame", "Send JSON text frames.")
            return
        if len(text_data) > MAX_FRAME_BYTES:
            await self.send_error({}, "too_large", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error({}, "bad_json", "The frame is not valid JSON.")
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self.send_error({}, "bad_request", "A message must be a JSON object.")
            return
        try:
            handler = self._handler_for(content)
            await handler(content)
        except ClientError as exc:
            await self.send_error(content, exc.code, exc.message)
        except redis.RedisError:
            logger.exception("redis error while handling %s", content.get("type"))
            await self.send_error(content, "unavailable", "The event store is unavailable; try again shortly.")

    def _handler_for(self, content: dict):
        kind = content.get("type")
        if not isinstance(kind, str):
            raise ClientError("bad_request", "type must be a string.")
        if "surfaceId" in content:
            raise ClientError("unknown_surface", f"Unknown surface {content.get('surfaceId')!r}.")
        handlers = {
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
            "stream.resume": self.on_resume,
            "ping": self.on_ping,
        }
        if kind not in handlers:
            raise ClientError("unknown_type", f"Unknown message type {kind!r}.")
        return handlers[kind]

    async def _join(self, chat_id: str) -> None:
        if not await _is_member(self.user, chat_id):
            raise ClientError("not_found", "No such conversation.")
        if chat_id not in self.subscriptions:
            await self.channel_layer.group_add(events.chat_group(chat_id), self.channel_name)
            self.subscriptions.add(chat_id)

    async def on_subscribe(self, content: dict) -> None:
        chat_id = _require_uuid(content, "conversationId")
        await self._join(chat_id)
        await self.send_json({"type": "subscribed", "conversationId": chat_id})

    async def on_unsubscribe(self, content: dict) -> None:
        chat_id = _require_uuid(content, "conversationId")
        if chat_id in self.subscriptions:
            await self.channel_layer.group_discard(events.chat_group(chat_id), self.channel_name)
            self.subscriptions.discard(chat_id)
        await self.send_json({"type": "unsubscribed", "conversationId": chat_id})

    async def on_ping(self, content: dict) -> None:
        await self.send_json({"type": "pong"})

    async def on_resume(self, content: dict) -> None:
        chat_id = _require_uuid(content, "conversationId")
        stream_id = _require_uuid(content, "streamId")
        after_seq = content.get("afterSeq", 0)
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise ClientError("bad_request", "afterSeq must be a non-negative integer.")
        # Join the group before reading the log: anything published after the read is queued here.
        await self._join(chat_id)
        if not await _stream_in_chat(chat_id, stream_id):
            raise ClientError("not_found", "No such stream in this conversation.")
        log = await eventlog.aread(stream_id)
        retained_from = log[0]["seq"] if log else None
        if after_seq > 0 and (retained_from is None or retained_from > after_seq + 1):
            await self.send_json(
                {
                    "type": events.REPLAY_GAP,
                    "conversationId": chat_id,
                    "streamId": stream_id,
                    "afterSeq": after_seq,
                    "snapshot": await database_sync_to_async(_snapshot_for)(self.user, chat_id),
                }
            )
            self.cursors[stream_id] = max((e["seq"] for e in log), default=after_seq)
            return
        self.cursors[stream_id] = max(self.cursors.get(stream_id, 0), after_seq)
        for event in log:
            await self._forward(event)

    # --- server → client ---------------------------------------------------------------

    async def stream_event(self, message: dict) -> None:
        event = message["event"]
        if event.get("conversationId") not in self.subscriptions:
            return
        stream_id, seq = event["streamId"], event["seq"]
        cursor = self.cursors.get(stream_id)
        if cursor is not None and seq > cursor + 1:
            # Live delivery is at-most-once: fill a hole from the log before going on.
            for missed in await eventlog.aread(stream_id, after_seq=cursor):
                if missed["seq"] >= seq:
                    break
                await self._forward(missed)
        await self._forward(event)

    async def _forward(self, event: dict) -> None:
        stream_id, seq = event["streamId"], event["seq"]
        cursor = self.cursors.get(stream_id)
        if cursor is not None and seq <= cursor:
            return
        self.cursors[stream_id] = seq
        await self.send_json(event)

    async def send_error(self, content: dict, code: str, message: str) -> None:
        frame = {"type": "error", "code": code, "message": message}
        for field in ("conversationId", "surfaceId"):
            if field in content:
                frame[field] = content[field]
        await self.send_json(frame)


def _snapshot_for(user, chat_id) -> dict:
    from chats.api.serializers import ChatDetailOutput

    return json.loads(json.dumps(ChatDetailOutput(selectors.chat_detail(user=user, chat_id=chat_id)).data, default=str))
