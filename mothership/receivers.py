"""Receivers of the apps' signals, connected in ``MothershipConfig.ready()``: each one service call."""

from __future__ import annotations

from mothership.tiles import badge_push, tile_push


def on_chat_created(sender, *, chat_id, **kwargs) -> None:
    tile_push(chat_id=chat_id)  # a new tile on every open dashboard


def on_turn_started(sender, *, chat_id, workspace_id, **kwargs) -> None:
    tile_push(chat_id=chat_id, workspace_id=workspace_id)  # the tile turns yellow everywhere


def on_turn_claimed(sender, *, chat_id, workspace_id, **kwargs) -> None:
    tile_push(chat_id=chat_id, workspace_id=workspace_id)  # "queued" becomes "streaming"


def on_turn_sealed(sender, *, chat_id, **kwargs) -> None:
    tile_push(chat_id=chat_id)  # and back to its final colour


def on_warming_changed(sender, *, chat_id, workspace_id, fields, **kwargs) -> None:
    badge_push(workspace_id=workspace_id, chat_id=chat_id, fields=fields)
