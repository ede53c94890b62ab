from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

# A turn's token counts by kind; the names match ``streams.providers.Usage`` field for field.
USAGE_FIELDS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")


class Workspace(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="workspaces")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "workspace"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"


UNTITLED = "New chat"
SYSTEM_PROMPT_MAX = 20_000  # characters
TITLE_FROM_MESSAGE_CHARS = 80
MAX_PINNED = 50  # per workspace: the pinned head of every list stays one screen


def title_from(content: str) -> str:
    """A chat's title from its first message: the first line with text, trimmed."""
    line = next((line.strip() for line in content.splitlines() if line.strip()), "")
    if len(line) > TITLE_FROM_MESSAGE_CHARS:
        line = line[: TITLE_FROM_MESSAGE_CHARS - 1].rstrip() + "…"
    return line or UNTITLED


class Chat(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="chats")
    title = models.CharField(max_length=200)
    # False while the title is the placeholder: the first message names the chat (``title_from``).
    title_set = models.BooleanField(default=True)
    # Who made it: they (and the workspace's owners) may close it and change its warming.
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The persistent "a stream is running" marker; cleared only by compare-and-set.
    # Deliberately not indexed: marker writes (start, finalize, repair) then stay HOT updates on
    # PostgreSQL, which halves the cost of a read-time repair. Every lookup by marker is either by
    # primary key or joins from the (small) set of live streams.
    active_stream_id = models.UUIDField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # In the trash since then: gone from every member's lists and pages (404), restorable for
    # MOTHERSHIP_TRASH_DAYS, then purged. Indexed: the purge looks for the old ones.
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Archived: out of the dashboard and the conversation list (behind their "Archived" filter).
    archived_at = models.DateTimeField(null=True, blank=True)
    # Pinned: listed first, above the rest, on the dashboard and in the conversation list.
    pinned_at = models.DateTimeField(null=True, blank=True)
    # The last message of the branch shown and sent (the messages form a tree by ``parent``);
    # None: the newest message. Not a foreign key: purging a chat needs no UPDATE of it.
    leaf_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Bumped by user-visible activity only (a new turn); maintenance never touches it.
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    # The model its turns use (an id of LLM_MODELS); blank, or one no longer offered: the default.
    model_id = models.CharField(max_length=64, blank=True, default="")
    # Sent before the conversation on every turn and warm (blank: none). A turn keeps the one it
    # started with (Stream.system_prompt).
    system_prompt = models.TextField(blank=True, default="", max_length=SYSTEM_PROMPT_MAX)
    # The MCP tools its turns may call: "<server>.<tool>" or "<server>.*" (none by default).
    tools = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["workspace", "-updated_at"], name="chat_workspace_recent")]

    def __str__(self) -> str:
        return self.title


class ChatVisit(models.Model):
    """When a member last had the chat in front of them: a reply that finished after it is new to them."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="visits")
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "chat"], name="chat_visit_once")]

    def __str__(self) -> str:
        return f"{self.user_id} saw {self.chat_id} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        PARTIAL = "partial"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages")
    # The message this one follows (None: the first of the conversation). Siblings (the same
    # parent) are versions: an edited question, a regenerated reply.
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="children")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    stream = models.ForeignKey("streams.Stream", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    input_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    # The counts were estimated from the text: the provider reported none for this turn (stopped
    # or failed before its usage arrived), though it billed for it.
    usage_estimated = models.BooleanField(default=False)
    # A reply's tool calls, in order: callId, tool, arguments, status, content, durationMs.
    tool_calls = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["chat", "created_at"], name="message_chat_created")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    @property
    def usage(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in USAGE_FIELDS}


class ChatImport(models.Model):
    """A file imported into a workspace (``chats.imports``): who, what and the chats it made. Only a
    whole import is recorded: a refused file leaves no row (and no chat)."""

    class Source(models.TextChoices):
        MOTHERSHIP = "mothership", "Mothership JSON export"
        CHATGPT = "chatgpt", "ChatGPT conversations.json"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="imports")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    filename = models.CharField(max_length=255, blank=True, default="")
    size = models.PositiveBigIntegerField(help_text="bytes")
    # Ids, not foreign keys: a chat purged from the trash later leaves the record as it was.
    chat_ids = models.JSONField(default=list, blank=True)
    message_count = models.PositiveIntegerField(default=0)
    # What was left out, in words (an image part, a tool's output…), per conversation.
    notes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.filename or self.source} → {self.workspace_id} ({len(self.chat_ids)} chats)"


def share_token() -> str:
    """A share link's secret: 32 URL-safe characters (192 random bits)."""
    return secrets.token_urlsafe(24)


class ChatShare(models.Model):
    """A read-only public snapshot of a chat's shown branch, readable by anyone with its token.

    The snapshot is copied when the link is made: later messages, edits and another branch never
    change what a link shows. It holds no ids (of the chat, its messages, users or workspace)."""

    token = models.CharField(max_length=64, unique=True, default=share_token, editable=False)
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="shares")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Revoked then: the link answers 404 for good. A link of a chat in the trash answers 404 too,
    # and again its snapshot once the chat is restored.
    revoked_at = models.DateTimeField(null=True, blank=True)
    title = models.CharField(max_length=200)
    # [{"role", "content", "status", "created_at", "tool_calls": [{"tool", "status"}]}], oldest first.
    messages = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["created_by", "revoked_at"], name="share_creator_active")]

    def __str__(self) -> str:
        return f"share of {self.title}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Attachment(models.Model):
    """A file or an image a member attached to a conversation (``chats.attachments``).

    Its bytes live in the ``attachments`` storage (the local folder, or an S3 bucket) under
    ``key``; an image's are re-encoded without metadata, with a thumbnail and a copy sized for
    the models beside them. Uploaded first, then named by a send: the messages that carry it
    (an edited question carries its files too). What the model reads of a PDF or a text file
    is kept in ``text``, so a turn and a warm build the same prompt from the database alone.
    """

    class Kind(models.TextChoices):
        IMAGE = "image"
        PDF = "pdf"
        TEXT = "text"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="attachments")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    messages = models.ManyToManyField(Message, blank=True, related_name="attachments")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # Found from the bytes, never from the name or the client's header.
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(help_text="bytes, as stored")
    sha256 = models.CharField(max_length=64)
    key = models.CharField(max_length=300, help_text="the file's name in the attachments storage")
    thumbnail_key = models.CharField(max_length=300, blank=True, default="")
    model_key = models.CharField(max_length=300, blank=True, default="", help_text="an image's copy sized for the models")
    model_content_type = models.CharField(max_length=100, blank=True, default="")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    # What a model without document support reads of a PDF, and every model of a text file.
    text = models.TextField(blank=True, default="")
    text_truncated = models.BooleanField(default=False)
    # What it adds to a prompt, estimated at upload (images by their pixels, documents by their pages).
    tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Sent: the first time a message named it (unsent uploads are purged after a day).
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["uploaded_by", "created_at"], name="attachment_uploader"),
            models.Index(fields=["sent_at", "created_at"], name="attachment_unsent"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.size} bytes)"
