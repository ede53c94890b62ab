from __future__ import annotations

from django.urls import reverse
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


class ShareOutput(serializers.Serializer):
    """One active share link of a chat, as its members see it (``context``: ``request``, ``may_revoke``)."""

    url = serializers.SerializerMethodField(help_text="The public, read-only page: no login needed.")
    token = serializers.CharField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    messages = serializers.SerializerMethodField(help_text="How many messages the snapshot shows.")
    can_revoke = serializers.SerializerMethodField(
        help_text="The caller may revoke it: its maker, the chat's creator or an owner of the workspace."
    )

    def get_url(self, share) -> str:
        return share_url(self.context["request"], share.token)

    def get_messages(self, share) -> int:
        return len(share.messages)

    def get_can_revoke(self, share) -> bool:
        return self.context["may_revoke"](share)


def share_url(request, token: str) -> str:
    return request.build_absolute_uri(reverse("share", kwargs={"token": token}))
