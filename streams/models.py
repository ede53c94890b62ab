from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Stream(models.Model):
    """One generation run: a user message answered by one assistant message."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        STREAMING = "streaming"
        COMPLETED = "completed"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"
        FAILED = "failed"

    LIVE_STATUSES = (Status.QUEUED, Status.STREAMING)
    TERMINAL_STATUSES = (Status.COMPLETED, Status.CANCELLED, Status.INTERRUPTED, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chat = models.ForeignKey("chats.Chat", on_delete=models.CASCADE, related_name="streams")
    user_message = models.ForeignKey("chats.Message", on_delete=models.SET_NULL, null=True, related_name="+")
    assistant_message = models.ForeignKey("chats.Message", on_delete=models.SET_NULL, null=True, related_name="+")
    # Who sent the turn (null: started by an operator or before this was recorded); the per-user
    # cap on turns running at once counts by it.
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    reason = models.CharField(max_length=255, blank=True, default="")
    last_seq = models.PositiveIntegerField(default=0)
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    # The deployment's id of the model (LLM_MODELS; the model's name under the one-model shorthand).
    model_id = models.CharField(max_length=64, blank=True, default="")
    # Continue: the reply goes on from its message's kept text (sent as the start of the reply),
    # and the seal appends the new text to it.
    continues = models.BooleanField(default=False)
    # The chat's system prompt when the turn started: what this turn sent, whatever the chat has since.
    system_prompt = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    first_delta_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Stop accounting: when the stop was asked for (cancel/close) and when the worker noticed it.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_noticed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["chat", "-created_at"], name="stream_chat_recent"),
            models.Index(fields=["started_by", "status"], name="stream_user_status"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None
