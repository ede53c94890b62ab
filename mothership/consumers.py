"""The one socket at ``/ws/``, assembled from each feature's handlers.

``StreamSocket`` (streams: chat subscriptions, resume, live events), ``WarmingSocket``
(warming: the ``cache-warming`` surface) and ``TileSocket`` (here: a workspace's tiles), on
the shared plumbing of ``SocketConsumer`` (authentication, validation, routing, errors).
"""

from __future__ import annotations

import json

from channels.db import database_sync_to_async

from chats.selectors import workspace_is_member
from mothership import access
from mothership.api.serializers import ChatDetailOutput
from mothership.infra.groups import workspace_group
from mothership.infra.socket import ClientError, SocketConsumer, require_uuid
from mothership.selectors import chat_detail
from streams.socket import StreamSocket
from warming.socket import SURFACE_ID, WarmingSocket


class TileSocket:
    """The dashboard: a workspace's tiles, pushed as they change."""

    async def on_workspace_subscribe(self, content: dict) -> None:
        workspace_id = require_uuid(content, "workspaceId")
        if not await database_sync_to_async(workspace_is_member)(user=self.user, workspace_id=workspace_id):
            raise ClientError("not_found", "No such workspace.")
        await self.join(workspace_group(workspace_id), grant=("workspace", workspace_id, {"workspaceId": workspace_id}))
        await self.send_json({"type": "subscribed", "workspaceId": workspace_id})

    async def tile_update(self, message: dict) -> None:
        tile = message["tile"]
        if self.joined(workspace_group(tile["workspaceId"])):
            await self.send_json(tile)


class AccessSocket:
    """Access withdrawn (``mothership.access``): checked again on ``access.changed`` and on the
    socket's timer (``MOTHERSHIP_SOCKET_RECHECK_SECONDS``), for changes that send no signal."""

    async def access_changed(self, message: dict) -> None:
        ended = message.get("endedSession")
        await self.recheck_access(signed_out=ended is not None and ended == self.session_key)

    async def recheck_access(self, *, signed_out: bool = False) -> None:
        if self.closed_by_server:
            return
        checked = dict(self.grants)  # a subscription made while the query runs is not judged by it
        if signed_out:
            signed_in, held = False, set()
        else:
            signed_in, held = await database_sync_to_async(access.socket_access)(
                user_id=self.user.pk, session_key=self.session_key, token_key=self.token_key, grants=checked
            )
        if self.closed_by_server:
            return  # the other check (signal or timer) closed it meanwhile
        dropped = [(group, names) for group, (_kind, _pk, names) in checked.items() if group not in held and group in self.grants]
        for group, names in dropped:
            await self.leave(group)
            await self.send_error(names, "forbidden", "You no longer have access to this.")
        if not signed_in or (dropped and not self.grants):
            await self.close_for_good(4403)


class MothershipConsumer(AccessSocket, TileSocket, WarmingSocket, StreamSocket, SocketConsumer):
    routes = {  # noqa: RUF012 (a constant table)
        "subscribe": "on_subscribe",
        "unsubscribe": "on_chat_unsubscribe",
        "stream.resume": "on_resume",
        "message.send": "on_message_send",
        "ping": "on_ping",
    }
    surfaces = {SURFACE_ID: WarmingSocket.surface_routes}  # noqa: RUF012
    concurrent = frozenset({"message.send"})

    async def on_subscribe(self, content: dict) -> None:
        # One message type, two subscriptions: a workspace's tiles or a conversation's stream.
        if "workspaceId" in content and "conversationId" not in content:
            await self.on_workspace_subscribe(content)
        else:
            await self.on_chat_subscribe(content)

    def replay_snapshot(self, user, chat_id) -> dict:
        return json.loads(json.dumps(ChatDetailOutput(chat_detail(user=user, chat_id=chat_id)).data, default=str))
