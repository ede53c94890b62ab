"""Shared by the management commands of every app."""

from __future__ import annotations

from django.core.management.base import CommandError

from chats.models import Chat
from chats.selectors import parse_uuid


def chat_arg(value: str) -> Chat:
    """The chat a command names, or a CommandError (exit status 1) that says why not."""
    pk = parse_uuid(value)
    chat = Chat.objects.filter(pk=pk).first() if pk else None
    if chat is None:
        raise CommandError(f"No chat {value!r}.")
    return chat
