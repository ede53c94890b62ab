from __future__ import annotations

from rest_framework import serializers

from chats.models import Message


class WorkspaceOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class MessageOutput(serializers.ModelSerializer):
    usage = serializers.DictField(child=serializers.IntegerField())

    class Meta:
        model = Message
        fields = ["id", "role", "content", "status", "stream", "usage", "usage_estimated", "tool_calls", "created_at"]
