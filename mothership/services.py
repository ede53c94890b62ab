"""Operations that span apps: one orchestrator each, calling every app's own service."""

from __future__ import annotations

import datetime
import logging

import redis
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rest_framework.authtoken.models import Token

from chats.attachments import attachments_purge_unsent
from chats.models import Attachment, Chat
from chats.selectors import chat_branch, parse_uuid, trash_due
from chats.services import chat_mark_closed, chat_mark_restored, chat_mark_trashed, chats_purge
from mothership import tokens
from mothership.models import ApiToken, UserPreferences
from streams.eventlog import logs_discard
from streams.models import Stream
from streams.services import StreamConflict, chat_show_branch, streams_cancel_chat
from warming.services import warming_disable

logger = logging.getLogger(__name__)


class RestoreExpired(Exception):
    """The chat has been in the trash longer than MOTHERSHIP_TRASH_DAYS: it is purged, or about to be."""


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


def chat_open_at(*, chat: Chat, message_id) -> None:
    """A link to a message (a search result): when it is on another branch than the shown one, that
    branch is shown, unless a reply streams (then the page shows the branch it writes to)."""
    pk = parse_uuid(message_id)
    path, siblings = chat_branch(chat=chat)
    if pk is None or pk in path or pk not in siblings:
        return
    try:
        chat_show_branch(chat=chat, message_id=pk)
    except StreamConflict:
        logger.info("chat %s opened at %s while a reply streams: its branch stays shown", chat.pk, pk)


def chat_trash(*, chat: Chat) -> dict:
    """Move a conversation to the trash: its live turn stopped first (owner-aware, by stream id),
    warming off (stop reason ``deleted``), then ``deleted_at`` set and the tile dropped from every
    open dashboard. Restorable for MOTHERSHIP_TRASH_DAYS (``chat_restore``), then purged."""
    # The stop first, as close does: with Redis down the delete fails (503) having changed nothing.
    outcome = streams_cancel_chat(chat=chat, reason="deleted")
    warming_disabled = warming_disable(chat=chat, reason="deleted")
    chat_mark_trashed(chat=chat)
    # A turn that started between the stop and the mark is stopped too (none can start after it).
    late = streams_cancel_chat(chat=chat, reason="deleted")
    if late is not None and late.cancelled:
        outcome = late
    cancelled = bool(outcome and outcome.cancelled)
    return {"warming_disabled": warming_disabled, "cancelled": cancelled, "stream_id": outcome.stream_id if cancelled else None}


def trash_cutoff(now: datetime.datetime | None = None) -> datetime.datetime:
    """Chats in the trash since before this may no longer be restored, and are purged."""
    return (now or timezone.now()) - datetime.timedelta(days=settings.MOTHERSHIP_TRASH_DAYS)


def chat_restore(*, chat: Chat) -> bool:
    """Take a conversation back from the trash, as it was (warming stays off); ``RestoreExpired``
    past MOTHERSHIP_TRASH_DAYS. False when it was not in the trash."""
    if chat.deleted_at is None:
        return False
    if chat.deleted_at < trash_cutoff():
        raise RestoreExpired(
            f"This chat was deleted more than {settings.MOTHERSHIP_TRASH_DAYS} days ago (MOTHERSHIP_TRASH_DAYS) and can no longer be restored."
        )
    return chat_mark_restored(chat=chat)


def trash_purge(*, dry_run: bool = False, chat_ids=None) -> dict:
    """Delete for good the chats in the trash for longer than MOTHERSHIP_TRASH_DAYS (``chat_ids``:
    these trashed chats, whatever their age: the admin's action), with their messages, streams and
    the streams' Redis logs. The spend ledger is kept (``Charge.chat`` is SET_NULL).
    ``dry_run``: only count."""
    due = (
        Chat.objects.filter(deleted_at__isnull=False, pk__in=list(chat_ids))
        if chat_ids is not None
        else trash_due(before=trash_cutoff())
    )
    ids = list(due.values_list("pk", flat=True))
    stream_ids = list(Stream.objects.filter(chat_id__in=ids).values_list("pk", flat=True))
    if dry_run:
        attachments = Attachment.objects.filter(chat_id__in=ids).count()
        return {
            "dry_run": True,
            "chats": len(ids),
            "chat_ids": [str(pk) for pk in ids],
            "streams": len(stream_ids),
            "attachments": attachments,
        }
    counts = chats_purge(chat_ids=ids) if ids else {"chats": 0, "messages": 0, "streams": 0, "attachments": 0}
    try:
        logs_discard(stream_ids)
    except redis.RedisError:  # they expire on their own (MOTHERSHIP_EVENT_LOG_TTL)
        logger.warning("could not delete the event logs of %d purged streams: Redis unreachable", len(stream_ids))
    if ids:
        logger.info(
            "purged %d chats from the trash (%d messages, %d streams, %d attachments)",
            counts["chats"],
            counts["messages"],
            counts["streams"],
            counts["attachments"],
        )
    return {"dry_run": False, **counts, "chat_ids": [str(pk) for pk in ids]}


def purge_due(*, dry_run: bool = False) -> dict:
    """What the beat's purge does at every MOTHERSHIP_TRASH_PURGE_INTERVAL (and ``manage.py purge_trash``):
    the trash past MOTHERSHIP_TRASH_DAYS (``trash_purge``), then the uploads no message named within
    MOTHERSHIP_ATTACHMENT_UNSENT_HOURS (``unsent_attachments``: how many)."""
    outcome = trash_purge(dry_run=dry_run)
    outcome["unsent_attachments"] = attachments_purge_unsent(dry_run=dry_run)
    return outcome


def api_token_revoke(*, user) -> bool:
    """Delete ``user``'s API token (the sockets opened with it are closed: ``mothership.access``).
    False when there was none. The next ``POST /api/auth/token`` makes a new one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)


# --- Named API tokens and preferences (the settings pages) ----------------------------------

MAX_API_TOKENS = 50  # per user: a list that fits a page, and a bound on what a leaked session can mint
LAST_USED_EVERY = datetime.timedelta(minutes=1)  # last_used_at's resolution: at most one write a minute per token


class TooManyTokens(Exception):
    def __init__(self):
        super().__init__(
            f"You have {MAX_API_TOKENS} API tokens, the most one person may have; revoke one you no longer use first."
        )


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """A new named token for ``user``: the row (which keeps only the key's SHA-256) and the key,
    which is never stored and so can be shown only now. ``TooManyTokens`` past ``MAX_API_TOKENS``."""
    if ApiToken.objects.filter(user=user).count() >= MAX_API_TOKENS:
        raise TooManyTokens()
    key = tokens.key_new()
    token = ApiToken.objects.create(
        user=user, name=name.strip(), key_hash=tokens.key_digest(key), prefix=key[: tokens.SHOWN_PREFIX]
    )
    return token, key


def api_token_delete(*, user, token_id: int) -> bool:
    """Revoke one of ``user``'s named tokens: it stops authenticating at once, and the sockets
    opened with it are closed (``post_delete`` → ``mothership.access``). False when it was not theirs."""
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        return False
    token.delete()  # one row, so that post_delete fires (a queryset delete would too, but per row anyway)
    return True


def api_token_used(*, token: ApiToken, now: datetime.datetime | None = None) -> bool:
    """Record that ``token`` authenticated a request: at most one write a minute, whatever the
    rate of requests or the number of processes (the UPDATE's condition is the fence). True when written."""
    now = now or timezone.now()
    cutoff = now - LAST_USED_EVERY
    if token.last_used_at is not None and token.last_used_at > cutoff:
        return False  # known fresh: no query at all
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=cutoff)
    written = ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    if written:
        token.last_used_at = now
    return bool(written)


def preferences_update(*, user, theme: str | None = None, default_model: str | None = None) -> UserPreferences:
    """Save what ``user`` chose (a value left out keeps its own)."""
    preferences, _ = UserPreferences.objects.get_or_create(user=user)
    fields = []
    if theme is not None:
        if theme not in UserPreferences.Theme.values:
            raise ValueError(f"No theme {theme!r}; choose one of {', '.join(UserPreferences.Theme.values)}.")
        preferences.theme = theme
        fields.append("theme")
    if default_model is not None:
        preferences.default_model = default_model
        fields.append("default_model")
    if fields:
        preferences.save(update_fields=fields)
    return preferences
