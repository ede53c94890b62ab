from __future__ import annotations

from rest_framework import serializers

from chats.models import Message


class WorkspaceOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class MessageOutput(serializers.ModelSerializer):
    usage = serializers.DictField(child=serializers.IntegerField())
    parent_id = serializers.UUIDField(allow_null=True, help_text="The message this one follows; null for the first.")
    sibling_ids = serializers.ListField(
        child=serializers.UUIDField(),
        help_text="The versions of this message (the same parent: an edited question, a regenerated reply), the oldest "
        "first, itself among them; PATCH the chat's leaf_id to one of them to show its branch.",
    )

    class Meta:
        model = Message
        fields = [
            "id",
            "role",
            "content",
            "status",
            "stream",
            "usage",
            "usage_estimated",
            "tool_calls",
            "parent_id",
            "sibling_ids",
            "created_at",
        ]
