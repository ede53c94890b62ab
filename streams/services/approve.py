"""A person answers a tool call that waits for approval: any member who may chat in its conversation."""

from __future__ import annotations

from chats.models import Chat
from streams import approvals
from streams.models import Stream


class ToolCallNotWaiting(Exception):
    """No call of the chat's live turn waits with that id (``code``: ``not_found`` or ``already_decided``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def tool_call_decide(*, chat: Chat, call_id: str, approve: bool) -> None:
    """Approve or deny the call ``call_id`` of the chat's live turn, once. ``ValueError`` for a
    malformed id; ``ToolCallNotWaiting`` when no such call waits."""
    approvals.call_id_check(call_id)
    for stream_id in Stream.objects.filter(chat_id=chat.pk, status__in=Stream.LIVE_STATUSES).values_list("pk", flat=True):
        answer = approvals.approval_decide(stream_id=stream_id, call_id=call_id, approve=approve)
        if answer == "decided":
            return
        if answer in (approvals.APPROVE, approvals.DENY):
            done = "approved" if answer == approvals.APPROVE else "denied"
            raise ToolCallNotWaiting("already_decided", f"That tool call was already {done}.")
    raise ToolCallNotWaiting("not_found", "No tool call of this conversation waits for approval with that id.")
