"""Show another branch of a conversation: refused while a turn streams (it writes to the shown one)."""

from __future__ import annotations

from chats.models import Chat
from chats.selectors import branch_leaf
from chats.services import BranchMoved, chat_set_leaf
from streams import locks
from streams.services.start import StreamConflict


class NotInChat(ValueError):
    """The message is not one of the chat's."""


def chat_show_branch(*, chat: Chat, message_id) -> Chat:
    """Show the branch through ``message_id`` (down to its newest descendants), which its next turn
    and its warms then send. ``StreamConflict`` while a turn is live in the chat (or one started
    meanwhile), ``NotInChat`` for a message of another chat."""
    expected = Chat.objects.filter(pk=chat.pk).values_list("leaf_id", flat=True).first()
    leaf = branch_leaf(chat=chat, message_id=message_id)
    if leaf is None:
        raise NotInChat("No such message in this chat.")
    owner = locks.lock_owner(chat_id=chat.pk)
    if owner is not None:
        raise StreamConflict(owner)
    try:
        chat_set_leaf(chat=chat, leaf_id=leaf, expected=expected)
    except BranchMoved:
        raise StreamConflict(locks.lock_owner(chat_id=chat.pk)) from None
    return chat
