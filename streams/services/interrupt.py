"""Stop and send: stop exactly the turn the page shows and start the new one, in one request."""

from __future__ import annotations

import time

from django.conf import settings

from chats.models import Chat
from streams import locks
from streams.providers import get_provider
from streams.services.cancel import stream_cancel
from streams.services.spending import turn_budget_check
from streams.services.start import StartedTurn, StreamConflict, stream_start

_POLL_SECONDS = 0.02


def stream_interrupt_and_start(*, chat: Chat, content: str, interrupt, user=None, attachments=()) -> StartedTurn:
    """Stop the live turn ``interrupt`` (owner-aware, as Stop is) and start a new turn with ``content``.

    A stale id, naming anything but the turn that is live now, stops nothing and raises
    ``StreamConflict`` with the live turn's id: a page that missed a newer turn never stops it.
    Nothing live (the turn ended meanwhile): the new turn simply starts. Over budget, nothing is
    stopped either (``BudgetExceeded``); ``attachments`` were checked (``turn_attachments``) before.
    """
    turn_budget_check(
        chat=chat,
        user=user,
        content=content,
        model=get_provider(chat.model_id or None).model,
        attached_tokens=sum(a.tokens for a in attachments),
    )
    owner = locks.lock_owner(chat_id=chat.pk)
    if owner is not None and owner != str(interrupt):
        raise StreamConflict(owner)
    if owner is not None:
        outcome = stream_cancel(chat=chat, stream_id=interrupt, reason="user")
        if outcome.reason == "stream_mismatch":
            raise StreamConflict(locks.lock_owner(chat_id=chat.pk))
        # The stopped turn's seal frees its lock right after the status it wrote: wait for that.
        deadline = time.monotonic() + settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT
        while locks.lock_owner(chat_id=chat.pk) == str(interrupt) and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
    return stream_start(chat=chat, content=content, user=user, attachments=attachments)
