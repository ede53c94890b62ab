"""The socket's ``cache-warming`` surface: subscribe, unsubscribe, invoke, and pushed updates.

A mixin of the one consumer (``mothership.consumers``). Every server message echoes
``conversationId``; a disconnect never touches warming (only Close does).
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from chats.models import Chat
from chats.selectors import chat_get_for_manager, user_is_member
from mothership.infra.groups import warming_group
from mothership.infra.socket import ClientError, require_uuid
from mothership.infra.throttles import user_rate_check
from warming import services
from warming.dispatch import warming_warm_now

SURFACE_ID = services.SURFACE_ID


def _fields(chat_id) -> dict:
    return services.warming_fields(services.warming_get(chat=Chat(pk=chat_id)))


def _apply(user, chat_id, change: dict) -> dict:
    chat = chat_get_for_manager(user=user, chat_id=chat_id)  # Http404 → not_found; another's chat → forbidden
    user_rate_check(scope="warming", user=user)  # past it: rate_limited
    return services.warming_fields(services.warming_update(chat=chat, **change))


def _warm_now(user, chat_id) -> dict:
    chat = chat_get_for_manager(user=user, chat_id=chat_id)
    user_rate_check(scope="warm_now", user=user)
    if warming_warm_now(chat_id=chat.pk).outcome == "skipped_streaming":
        raise ClientError("busy", "A reply is streaming; its end refreshes the cache anyway.")
    return services.warming_fields(services.warming_get(chat=chat))


def _change_for(action, payload) -> dict:
    """The schedule change an ``invoke`` asks for; a bad payload changes nothing."""
    if action == "set-enabled":
        if not isinstance(payload, bool):
            raise ClientError(
                "bad_payload", "set-enabled takes an explicit boolean payload (true or false); nothing was changed."
            )
        return {"enabled": payload}
    if action == "set-interval":
        try:
            return {"interval_seconds": services.validate_interval(payload)}
        except services.WarmingInputError as exc:
            raise ClientError("bad_payload", str(exc)) from None
    if action == "toggle":  # legacy: a flip without a payload; an explicit boolean is honoured as such
        if payload is None:
            return {"flip": True}
        if isinstance(payload, bool):
            return {"enabled": payload}
        raise ClientError("bad_payload", "toggle takes no payload (flip) or an explicit boolean.")
    raise ClientError("unknown_action", f"Unknown action {action!r}; use set-enabled, set-interval, warm-now or toggle.")


class WarmingSocket:
    surface_routes = {  # noqa: RUF012 (a constant table)
        "subscribe": "on_warming_subscribe",
        "unsubscribe": "on_warming_unsubscribe",
        "invoke": "on_warming_invoke",
    }

    def _surface_frame(self, kind: str, chat_id: str, fields: dict) -> dict:
        return {"type": kind, "surfaceId": SURFACE_ID, "conversationId": chat_id, "fields": fields}

    async def on_warming_subscribe(self, content: dict) -> None:
        chat_id = require_uuid(content, "conversationId")
        if not await database_sync_to_async(user_is_member)(user=self.user, chat_id=chat_id):
            raise ClientError("not_found", "No such conversation.")
        await self.join(warming_group(chat_id), grant=("chat", chat_id, {"surfaceId": SURFACE_ID, "conversationId": chat_id}))
        fields = await database_sync_to_async(_fields)(chat_id)
        await self.send_json(self._surface_frame("surface", chat_id, fields))

    async def on_warming_unsubscribe(self, content: dict) -> None:
        chat_id = require_uuid(content, "conversationId")
        await self.leave(warming_group(chat_id))
        await self.send_json({"type": "unsubscribed", "surfaceId": SURFACE_ID, "conversationId": chat_id})

    async def on_warming_invoke(self, content: dict) -> None:
        chat_id = require_uuid(content, "conversationId")
        action, payload = content.get("action"), content.get("payload")
        if action == "warm-now":
            fields = await database_sync_to_async(_warm_now)(self.user, chat_id)
        else:
            change = _change_for(action, payload)
            try:
                fields = await database_sync_to_async(_apply)(self.user, chat_id, change)
            except services.WarmingInputError as exc:
                raise ClientError("bad_payload", str(exc)) from None
        if not self.joined(warming_group(chat_id)):  # subscribers get it through the group push
            await self.send_json(self._surface_frame("update", chat_id, fields))

    async def warming_update(self, message: dict) -> None:
        chat_id = message["conversationId"]
        if self.joined(warming_group(chat_id)):
            await self.send_json(self._surface_frame("update", chat_id, message["fields"]))
