"""What a turn sends the model: its conversation up to its user message, and the kept text a
Continue goes on from."""

from __future__ import annotations

from chats.models import Message
from chats.selectors import conversation_prefix
from streams.models import Stream


def conversation_history(*, stream: Stream) -> list[dict]:
    """What the model sees for this turn: its branch of the conversation, up to its user message."""
    return conversation_prefix(chat_id=stream.chat_id, until=stream.user_message, system=stream.system_prompt)


def continued_text(*, stream: Stream) -> str:
    """Continue: the kept text the reply goes on from (the message holds it until the seal appends)."""
    if not stream.continues:
        return ""
    return Message.objects.filter(pk=stream.assistant_message_id).values_list("content", flat=True).first() or ""


def prompt_sent(history: list[dict], kept: str) -> list[dict]:
    """What the model reads for a turn, as its usage is estimated: the history, then a Continue's
    kept text, which goes to the model as the start of its reply (a trailing assistant message)."""
    return [*history, {"role": "assistant", "content": kept}] if kept else history
