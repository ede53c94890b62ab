"""Receivers of the apps' signals, connected in ``MothershipConfig.ready()``: each one service call."""

from __future__ import annotations

from mothership.access import access_changed_push
from mothership.tiles import badge_push, tile_push, tile_remove_push


def on_chat_created(sender, *, chat_id, **kwargs) -> None:
    tile_push(chat_id=chat_id)  # a new tile on every open dashboard


def on_chat_renamed(sender, *, chat_id, workspace_id, **kwargs) -> None:
    tile_push(chat_id=chat_id, workspace_id=workspace_id)  # the tile shows its new title


def on_chat_trashed(sender, *, chat_id, workspace_id, **kwargs) -> None:
    tile_remove_push(chat_id=chat_id, workspace_id=workspace_id)  # the tile leaves every open dashboard


def on_chat_restored(sender, *, chat_id, workspace_id, **kwargs) -> None:
    tile_push(chat_id=chat_id, workspace_id=workspace_id)  # and comes back


def on_chat_archived(sender, *, chat_id, workspace_id, archived, **kwargs) -> None:
    # Archived: the tile leaves every open dashboard; taken out of the archive: it comes back.
    (tile_remove_push if archived else tile_push)(chat_id=chat_id, workspace_id=workspace_id)


def on_turn_started(sender, *, chat_id, workspace_id, **kwargs) -> None:
    tile_push(chat_id=chat_id, workspace_id=workspace_id)  # the tile turns yellow everywhere


def on_turn_claimed(sender, *, chat_id, workspace_id, **kwargs) -> None:
    tile_push(chat_id=chat_id, workspace_id=workspace_id)  # "queued" becomes "streaming"


def on_turn_tool_changed(sender, *, chat_id, workspace_id, **kwargs) -> None:
    tile_push(chat_id=chat_id, workspace_id=workspace_id)  # "needs you" or the running tool on every dashboard, and back


def on_turn_sealed(sender, *, chat_id, **kwargs) -> None:
    tile_push(chat_id=chat_id)  # and back to its final colour


def on_warming_changed(sender, *, chat_id, workspace_id, fields, **kwargs) -> None:
    badge_push(workspace_id=workspace_id, chat_id=chat_id, fields=fields)


# --- Access withdrawn at once (mothership.access) ----------------------------------------


def on_membership_deleted(sender, *, instance, **kwargs) -> None:
    access_changed_push(user_id=instance.user_id)


def on_user_saved(sender, *, instance, created, update_fields=None, **kwargs) -> None:
    if not created and update_fields != frozenset({"last_login"}):  # deactivated, a new password, …
        access_changed_push(user_id=instance.pk)


def on_logged_out(sender, *, request, user, **kwargs) -> None:
    if user is not None:
        access_changed_push(user_id=user.pk, ended_session=request.session.session_key)


def on_token_deleted(sender, *, instance, **kwargs) -> None:
    access_changed_push(user_id=instance.user_id)


def on_api_token_deleted(sender, *, instance, **kwargs) -> None:
    access_changed_push(user_id=instance.user_id)  # a named token revoked: its sockets are closed at once
