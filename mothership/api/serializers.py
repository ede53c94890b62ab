"""The reconciled chat view as JSON: the chat, its liveness, its messages and the live snapshot."""

from __future__ import annotations

from rest_framework import serializers

from streams.api.serializers import messages_output
from streams.providers import model_for


class ChatOutput(serializers.Serializer):
    """A ``ChatView``: the chat with its marker reconciled against the liveness lock."""

    id = serializers.UUIDField(source="chat.id")
    workspace = serializers.UUIDField(source="chat.workspace_id")
    title = serializers.CharField(source="chat.title")
    model = serializers.SerializerMethodField(help_text="The id of the model its turns use (GET /api/mothership/models).")
    active_stream_id = serializers.UUIDField(allow_null=True)
    liveness = serializers.ChoiceField(choices=["verified", "unknown"])
    state = serializers.ChoiceField(
        choices=["idle", "streaming", "waiting", "cancelled", "interrupted", "failed"],
        help_text="waiting: the live turn's tool call waits for a person (POST …/tool-calls/<callId>/approval).",
    )
    waiting_call = serializers.CharField(allow_null=True, help_text="The id of the tool call that waits for a person.")
    last_message = serializers.CharField()
    unread = serializers.BooleanField(
        help_text="A reply ended after you last had this chat open (POST …/seen); false in a chat's own JSON."
    )
    stalled = serializers.BooleanField(
        help_text="Streaming, its worker alive, but no event for MOTHERSHIP_STALL_SECONDS (the model has gone quiet)."
    )
    closed_at = serializers.DateTimeField(source="chat.closed_at", allow_null=True)
    archived = serializers.SerializerMethodField(help_text="Out of the dashboard and the list (?archived=1 lists them).")
    pinned = serializers.SerializerMethodField(help_text="Listed first, above the rest.")
    leaf_id = serializers.UUIDField(
        source="chat.leaf_id", allow_null=True, help_text="The last message of the shown branch; null: the newest."
    )
    tools = serializers.ListField(
        source="chat.tools",
        child=serializers.CharField(),
        help_text="The MCP tools its turns may call (<server>.<tool>, <server>.*).",
    )
    warming = serializers.DictField(
        allow_null=True, help_text="The tile's warming badge: enabled, nextWarmAt (epoch ms), stopReason; null before any opt-in."
    )
    created_at = serializers.DateTimeField(source="chat.created_at")
    updated_at = serializers.DateTimeField(source="chat.updated_at")

    def get_archived(self, view) -> bool:
        return view.chat.archived_at is not None

    def get_pinned(self, view) -> bool:
        return view.chat.pinned_at is not None

    def get_model(self, view) -> str:
        return model_for(view.chat.model_id).id


class StreamSnapshotOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    last_seq = serializers.IntegerField()
    text = serializers.CharField(allow_null=True)
    assistant_message_id = serializers.UUIDField(allow_null=True)
    provider = serializers.CharField()
    model = serializers.CharField()


class ChatDetailOutput(serializers.Serializer):
    """A ``ChatDetail``: the reconciled chat plus its messages and the live stream's snapshot."""

    def to_representation(self, detail):
        data = ChatOutput(detail.view).data
        # Only here, not in the list: a prompt may be long.
        data["system_prompt"] = detail.view.chat.system_prompt
        data["messages"] = messages_output(detail.messages)
        # The latest messages only: this cursor fetches the ones before them
        # (GET /api/mothership/chats/<id>/messages?cursor=…); null when these are all.
        data["messages_cursor"] = detail.messages_cursor
        data["stream"] = StreamSnapshotOutput(detail.stream).data if detail.stream else None
        return data
