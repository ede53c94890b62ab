from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chats.models import Attachment, Membership, Message


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


class AttachmentOutput(serializers.Serializer):
    """A file of a conversation, as its members see it (``attachment_json``)."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Attachment.Kind.choices)
    content_type = serializers.CharField(help_text="Found from the file's bytes, never from its name.")
    size = serializers.IntegerField(help_text="bytes (an image's after re-encoding without its metadata)")
    url = serializers.CharField(help_text="Members only: the file (an image inline, anything else as a download).")
    thumbnail_url = serializers.CharField(allow_null=True, help_text="An image's thumbnail (WebP, 320 px); null for other files.")
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    pages = serializers.IntegerField(allow_null=True, help_text="A PDF's pages.")


def attachment_json(attachment: Attachment) -> dict:
    url = reverse("api-chat-attachment", args=[attachment.chat_id, attachment.pk])
    return {
        "id": str(attachment.pk),
        "name": attachment.name,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "url": url,
        "thumbnail_url": f"{url}/thumbnail" if attachment.thumbnail_key else None,
        "width": attachment.width,
        "height": attachment.height,
        "pages": attachment.pages,
    }


class MessageOutput(serializers.ModelSerializer):
    usage = serializers.DictField(child=serializers.IntegerField())
    attachments = serializers.SerializerMethodField(help_text="The question's files, in the order they were attached.")
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
            "attachments",
            "parent_id",
            "sibling_ids",
            "created_at",
        ]

    @extend_schema_field(AttachmentOutput(many=True))
    def get_attachments(self, message) -> list[dict]:
        """``attachments_by_message`` (a dict in the context, message id → rows) read them all in one query; else this one's."""
        known = self.context.get("attachments")
        rows = known.get(message.pk, []) if known is not None else list(message.attachments.order_by("created_at", "id"))
        return [attachment_json(a) for a in rows]


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
