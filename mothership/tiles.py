"""Live task tiles: a chat's tile, as the dashboard shows it, pushed to its workspace's group.

Pushed when a turn starts or seals (by the worker, a stop or the sweeper) and when a chat is
created; a warming change pushes only the badge (``tile.warming``). The payload is read back
through the reconciling selector and carries the tile rendered by the dashboard's own template
(``templates/mothership/_tile.html``), so a pushed tile is exactly what a reload would render.
"""

from __future__ import annotations

import logging

from django.template.loader import render_to_string

from chats.models import Chat
from mothership.infra import groups
from mothership.selectors import ChatView, chat_views_by_id

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "tile.update"  # channel-layer type; the consumer's ``tile_update`` handler


def tile_payload(view: ChatView) -> dict:
    chat = view.chat
    return {
        "type": "tile",
        "workspaceId": str(chat.workspace_id),
        "conversationId": str(chat.id),
        "title": chat.title,
        "state": view.state,
        "activeStreamId": str(view.active_stream_id) if view.active_stream_id else None,
        "liveness": view.liveness,
        "lastMessage": view.last_message,
        "updatedAt": chat.updated_at.isoformat(),
        "warming": view.warming or {},
        # The tile as the dashboard renders it: its markup and labels are defined once, in the template.
        "html": render_to_string("mothership/_tile.html", {"tile": view}),
    }


def tile_push(*, chat_id, workspace_id=None) -> None:
    """Best effort: a lost push is corrected by the page's periodic re-read of the list.

    Nothing is read or rendered when no dashboard of the workspace is open (no subscriber in
    Redis, whatever the process). No race: a dashboard subscribes before it reads its tiles,
    and this runs after the change committed.
    """
    try:
        if workspace_id is None:
            workspace_id = Chat.objects.filter(pk=chat_id).values_list("workspace_id", flat=True).first()
        if workspace_id is None or not groups.has_listeners(groups.workspace_group(workspace_id)):
            return
        views = chat_views_by_id([chat_id])
        if not views:  # deleted meanwhile
            return
        groups.publish(groups.workspace_group(views[0].chat.workspace_id), {"type": MESSAGE_TYPE, "tile": tile_payload(views[0])})
    except Exception:
        logger.exception("could not push the tile of chat %s", chat_id)


def tile_remove_push(*, chat_id, workspace_id) -> None:
    """The chat went to the trash: every open dashboard of its workspace drops the tile (best effort)."""
    tile = {"type": "tile.removed", "workspaceId": str(workspace_id), "conversationId": str(chat_id)}
    try:
        groups.publish(groups.workspace_group(workspace_id), {"type": MESSAGE_TYPE, "tile": tile})
    except Exception:
        logger.exception("could not tell the dashboards that chat %s went to the trash", chat_id)


def badge_push(*, workspace_id, chat_id, fields: dict) -> None:
    """Only the tile's warming badge changed (a warm, a toggle): no need to re-read the tile."""
    badge = {"enabled": fields["enabled"], "nextWarmAt": fields["timer"]["nextWarmAt"], "stopReason": fields["stopReason"]}
    tile = {"type": "tile.warming", "workspaceId": str(workspace_id), "conversationId": str(chat_id), "warming": badge}
    try:
        groups.publish(groups.workspace_group(workspace_id), {"type": MESSAGE_TYPE, "tile": tile})
    except Exception:
        logger.exception("could not push the warming badge of chat %s", chat_id)
