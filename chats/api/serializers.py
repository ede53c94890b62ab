from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from chats.models import Membership, Message


class WorkspaceOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class MemberOutput(serializers.Serializer):
    """A membership as its workspace's members see it (no e-mail: members see who, not how to reach them)."""

    user_id = serializers.IntegerField(source="user.pk")
    username = serializers.CharField(source="user.username")
    name = serializers.CharField(source="user.get_full_name", help_text="First and last name; blank when not given.")
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    joined_at = serializers.DateTimeField(source="created_at")


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


class SearchResultOutput(serializers.Serializer):
    chat = serializers.UUIDField(source="chat_id")
    message = serializers.UUIDField(
        source="message_id", allow_null=True, help_text="The message that matched; null when the chat's title matched."
    )
    title = serializers.CharField(help_text="The chat's title, plain text (escape it to show it).")
    snippet = serializers.CharField(
        help_text="HTML: the matched text around the words, every character of it escaped, the matched words in "
        "<mark>…</mark> (the only tags it holds). A title hit's snippet is its title."
    )
    created_at = serializers.DateTimeField(help_text="When the message was written (a title hit: when the chat was).")


class SearchOutput(serializers.Serializer):
    results = SearchResultOutput(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page's URL (the same query, a cursor), or null.")


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
