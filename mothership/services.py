"""Operations that span apps: one orchestrator each, calling every app's own service."""

from __future__ import annotations

from rest_framework.authtoken.models import Token

from chats.models import Chat
from chats.services import chat_mark_closed
from streams.services import streams_cancel_chat
from warming.services import warming_disable


def chat_close(*, chat: Chat) -> dict:
    """Close a conversation: the live turn stopped, warming off (stop reason ``closed``), ``closed_at`` set.

    ``updated_at`` is left alone. A new message reopens the chat (``closed_at`` cleared) but
    does not turn warming back on.
    """
    # The stop first: it needs Redis, and if Redis is down the close fails (503) having changed nothing.
    outcome = streams_cancel_chat(chat=chat, reason="closed")
    warming_disabled = warming_disable(chat=chat, reason="closed")
    chat_mark_closed(chat=chat)
    cancelled = bool(outcome and outcome.cancelled)
    return {
        "ok": True,
        "warming_disabled": warming_disabled,
        "cancelled": cancelled,
        "stream_id": outcome.stream_id if cancelled else None,
    }


def api_token_revoke(*, user) -> bool:
    """Delete ``user``'s API token (the sockets opened with it are closed: ``mothership.access``).
    False when there was none. The next ``POST /api/auth/token`` makes a new one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)
