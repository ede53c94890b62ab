"""Messages as clients see them: chats' fields plus what the turn cost (from the price table)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from chats.api.serializers import MessageOutput
from chats.attachments.selectors import message_attachments
from mothership.infra.api import StrictCharField, StrictUUIDField
from streams.selectors import message_cost


@extend_schema_serializer(component_name="MessageSendInput")
class MessageSendInput(serializers.Serializer):
    """A message sent: ``POST …/messages`` and the socket's ``message.send`` read the same fields."""

    content = StrictCharField(max_length=100_000, trim_whitespace=True, allow_blank=True)
    # Stop and send: the id of the turn the page shows as running, stopped before this one starts.
    interrupt = StrictUUIDField(required=False)
    attachments = serializers.ListField(
        child=StrictUUIDField(),
        required=False,
        max_length=100,
        help_text="Files uploaded to this chat (POST …/attachments), in the order the model reads them.",
    )

    def validate(self, attrs):
        if not attrs["content"] and not attrs.get("attachments"):
            raise ValidationError({"content": ["Write a message or attach a file."]})
        return attrs


class MessageCostOutput(MessageOutput):
    """The schema of ``messages_output``."""

    cost_usd = serializers.FloatField(allow_null=True, help_text="USD, from the price table; null for a user message.")
    model = serializers.CharField(allow_null=True, help_text="The model of the reply's last turn; null for a user message.")
    duration_ms = serializers.IntegerField(allow_null=True, help_text="How long the reply's last turn ran; null until it ends.")
    stop_reason = serializers.CharField(
        allow_null=True,
        help_text="Why the reply's last turn ended before its end (user, closed, budget, worker_lost, …); null when it "
        "completed, for a user message, and while it runs.",
    )

    class Meta(MessageOutput.Meta):
        fields = [*MessageOutput.Meta.fields, "cost_usd", "model", "duration_ms", "stop_reason"]


def messages_output(messages) -> list[dict]:
    """Each message's JSON with what its reply cost: ``cost_usd`` (USD), ``model``, ``duration_ms``
    and ``stop_reason`` of its last turn; null for a user message. A reply answered again adds up every attempt."""
    attachments = message_attachments(message_ids=[m.pk for m in messages if m.role == "user"])
    rows = MessageOutput(messages, many=True, context={"attachments": attachments}).data
    return [{**data, **reply_figures(m)} for m, data in zip(messages, rows, strict=True)]


def reply_figures(message) -> dict:
    stream = message.stream if message.role == "assistant" and message.stream_id else None
    seconds = stream.duration_seconds if stream is not None else None
    return {
        "cost_usd": message_cost(message),
        "model": (stream.model_id or stream.model) if stream is not None else None,
        "duration_ms": round(seconds * 1000) if seconds is not None else None,
        "stop_reason": (stream.reason or None)
        if stream is not None and stream.finished_at and stream.status != "completed"
        else None,
    }
