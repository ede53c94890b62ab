"""A member's message sent, over HTTP (``POST …/messages``) or the page's socket (``message.send``):
the same checks, in the same order, then the turn."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

from chats.models import Chat
from mothership.infra.throttles import user_rate_check
from streams.selectors import STOP_REFUSED, user_may_stop
from streams.services.interrupt import stream_interrupt_and_start
from streams.services.start import StartedTurn, stream_start, turn_attachments


def message_send(*, chat: Chat, user, content: str, attachment_ids=(), interrupt=None) -> StartedTurn:
    """Send ``content`` (and the uploads ``attachment_ids``, in that order) to ``chat``, of which
    ``user`` is a member; with ``interrupt``, stop that live turn first (Stop and send).

    Refusals, before anything is stopped or started: ``PermissionDenied`` (``interrupt`` names
    another member's turn), ``Throttled`` (past ``MOTHERSHIP_SEND_RATE``), ``AttachmentRefused``
    (a file the chat's model cannot read, or not this chat's); then whatever the start refuses
    (``StreamConflict``, ``TooManyTurns``, ``BudgetExceeded``, ``Chat.DoesNotExist``).
    """
    if interrupt is not None and not user_may_stop(user=user, chat=chat, stream_id=interrupt):
        raise PermissionDenied(STOP_REFUSED)  # nothing stopped, nothing sent
    user_rate_check(scope="send", user=user)
    files = turn_attachments(chat=chat, user=user, attachment_ids=list(attachment_ids or ()))
    if interrupt is not None:
        return stream_interrupt_and_start(chat=chat, content=content, interrupt=interrupt, user=user, attachments=files)
    return stream_start(chat=chat, content=content, user=user, attachments=files)
