"""Messages as clients see them: chats' fields plus what the turn cost (from the price table)."""

from __future__ import annotations

from rest_framework import serializers

from chats.api.serializers import MessageOutput
from streams.selectors import message_cost


class MessageCostOutput(MessageOutput):
    """The schema of ``messages_output``."""

    cost_usd = serializers.FloatField(allow_null=True, help_text="USD, from the price table; null for a user message.")

    class Meta(MessageOutput.Meta):
        fields = [*MessageOutput.Meta.fields, "cost_usd"]


def messages_output(messages) -> list[dict]:
    """Each message's JSON with ``cost_usd``: an assistant message's cost in USD, null for the user's."""
    rows = MessageOutput(messages, many=True).data
    return [{**data, "cost_usd": message_cost(m)} for m, data in zip(messages, rows, strict=True)]
