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
from django.http import Http404

from chats import selectors
from streams import eventlog, events
from warming import services as warming_services

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
def _is_workspace_member(user, workspace_id) -> bool:
    return selectors.workspace_list(user=user).filter(pk=workspace_id).exists()


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
        self.warming_subscriptions: set[str] = set()
        self.workspace_subscriptions: set[str] = set()
        # Per stream: the highest seq this socket has sent (no duplicate, no gap).
        self.cursors: dict[str, int] = {}
        await self.accept()

    async def disconnect(self, code):
        # Closing a socket never stops a stream: only leave the groups.
        for chat_id in getattr(self, "subscriptions", set()):
            await self.channel_layer.group_discard(events.chat_group(chat_id), self.channel_name)
        # Nor does it touch warming: a disconnect is not a close.
        for chat_id in getattr(self, "warming_subscriptions", set()):
            await self.channel_layer.group_discard(warming_services.warming_group(chat_id), self.channel_name)
        for workspace_id in getattr(self, "workspace_subscriptions", set()):
            await self.channel_layer.group_discard(events.workspace_group(workspace_id), self.channel_name)

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
        except Http404:
            await self.send_error(content, "not_found", "No such conversation.")
        except redis.RedisError:
            logger.exception("redis error while handling %s", content.get("type"))
            await self.send_error(content, "unavailable", "The event store is unavailable; try again shortly.")

    def _handler_for(self, content: dict):
        kind = content.get("type")
        if not isinstance(kind, str):
            raise ClientError("bad_request", "type must be a string.")
        if "surfaceId" in content:
            if content["surfaceId"] != warming_services.SURFACE_ID:
                raise ClientError("unknown_surface", f"Unknown surface {content.get('surfaceId')!r}.")
            surface_handlers = {
                "subscribe": self.on_warming_subscribe,
                "unsubscribe": self.on_warming_unsubscribe,
                "invoke": self.on_warming_invoke,
            }
            if kind not in surface_handlers:
                raise ClientError("unknown_type", f"Unknown message type {kind!r} for surface {warming_services.SURFACE_ID!r}.")
            return surface_handlers[kind]
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
        if "workspaceId" in content and "conversationId" not in content:
            await self.on_workspace_subscribe(content)
            return
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
        # The client says what it has: replay everything after that, even events this socket
        # already carried (a page may drop events of a stream it did not know yet).
        self.cursors[stream_id] = after_seq
        for event in log:
            await self._forward(event)

    # --- the dashboard: a workspace's tiles ---------------------------------------------

    async def on_workspace_subscribe(self, content: dict) -> None:
        workspace_id = _require_uuid(content, "workspaceId")
        if not await _is_workspace_member(self.user, workspace_id):
            raise ClientError("not_found", "No such workspace.")
        if workspace_id not in self.workspace_subscriptions:
            await self.channel_layer.group_add(events.workspace_group(workspace_id), self.channel_name)
            self.workspace_subscriptions.add(workspace_id)
        await self.send_json({"type": "subscribed", "workspaceId": workspace_id})

    async def tile_update(self, message: dict) -> None:
        tile = message["tile"]
        if tile["workspaceId"] in self.workspace_subscriptions:
            await self.send_json(tile)

    # --- the cache-warming surface -------------------------------------------------------

    def _surface_frame(self, kind: str, chat_id: str, fields: dict) -> dict:
        return {"type": kind, "surfaceId": warming_services.SURFACE_ID, "conversationId": chat_id, "fields": fields}

    async def on_warming_subscribe(self, content: dict) -> None:
        chat_id = _require_uuid(content, "conversationId")
        if not await _is_member(self.user, chat_id):
            raise ClientError("not_found", "No such conversation.")
        if chat_id not in self.warming_subscriptions:
            await self.channel_layer.group_add(warming_services.warming_group(chat_id), self.channel_name)
            self.warming_subscriptions.add(chat_id)
        fields = await database_sync_to_async(_warming_fields)(chat_id)
        await self.send_json(self._surface_frame("surface", chat_id, fields))

    async def on_warming_unsubscribe(self, content: dict) -> None:
        chat_id = _require_uuid(content, "conversationId")
        if chat_id in self.warming_subscriptions:
            await self.channel_layer.group_discard(warming_services.warming_group(chat_id), self.channel_name)
            self.warming_subscriptions.discard(chat_id)
        await self.send_json({"type": "unsubscribed", "surfaceId": warming_services.SURFACE_ID, "conversationId": chat_id})

    async def on_warming_invoke(self, content: dict) -> None:
        chat_id = _require_uuid(content, "conversationId")
        action, payload = content.get("action"), content.get("payload")
        if action == "set-enabled":
            if not isinstance(payload, bool):
                raise ClientError("bad_payload", "set-enabled takes an explicit boolean payload (true or false); nothing was changed.")
            change = {"enabled": payload}
        elif action == "set-interval":
            try:
                change = {"interval_seconds": warming_services.validate_interval(payload)}
            except warming_services.WarmingInputError as exc:
                raise ClientError("bad_payload", str(exc)) from None
        elif action == "toggle":  # legacy: a flip without a payload; an explicit boolean is honoured as such
            if payload is None:
                change = {"flip": True}
            elif isinstance(payload, bool):
                change = {"enabled": payload}
            else:
                raise ClientError("bad_payload", "toggle takes no payload (flip) or an explicit boolean.")
        elif action == "warm-now":
            fields = await database_sync_to_async(_warming_warm_now)(self.user, chat_id)
            if chat_id not in self.warming_subscriptions:
                await self.send_json(self._surface_frame("update", chat_id, fields))
            return
        else:
            raise ClientError("unknown_action", f"Unknown action {action!r}; use set-enabled, set-interval, warm-now or toggle.")
        try:
            fields = await database_sync_to_async(_warming_apply)(self.user, chat_id, change)
        except warming_services.WarmingInputError as exc:
            raise ClientError("bad_payload", str(exc)) from None
        if chat_id not in self.warming_subscriptions:  # subscribers get it through the group push
            await self.send_json(self._surface_frame("update", chat_id, fields))

    async def warming_update(self, message: dict) -> None:
        chat_id = message["conversationId"]
        if chat_id in self.warming_subscriptions:
            await self.send_json(self._surface_frame("update", chat_id, message["fields"]))

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


def _warming_fields(chat_id) -> dict:
    from chats.models import Chat

    return warming_services.warming_fields(warming_services.warming_get(chat=Chat(pk=chat_id)))


def _warming_apply(user, chat_id, change: dict) -> dict:
    chat = selectors.chat_get_for_member(user=user, chat_id=chat_id)  # Http404 → not_found below
    return warming_services.warming_fields(warming_services.warming_update(chat=chat, **change))


def _warming_warm_now(user, chat_id) -> dict:
    """One warm now, on the worker; its result arrives as an update. Refused while a turn streams."""
    from streams import locks
    from warming.dispatch import claim_one
    from warming.tasks import warm_batch

    chat = selectors.chat_get_for_member(user=user, chat_id=chat_id)
    if locks.lock_owner(chat_id=chat.pk) is not None:
        raise ClientError("busy", "A reply is streaming; its end refreshes the cache anyway.")
    warm_batch.delay([str(chat.pk)], claim_one(chat_id=chat.pk))
    return warming_services.warming_fields(warming_services.warming_get(chat=chat))


def _snapshot_for(user, chat_id) -> dict:
    from chats.api.serializers import ChatDetailOutput

    return json.loads(json.dumps(ChatDetailOutput(selectors.chat_detail(user=user, chat_id=chat_id)).data, default=str))
