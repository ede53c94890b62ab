from __future__ import annotations

from django.conf import settings
from django.db import models


def _default_interval() -> int:
    return settings.MOTHERSHIP_WARMING_DEFAULT_INTERVAL


class WarmingSchedule(models.Model):
    """Per-conversation prompt-cache warming. Off by default: nothing is scheduled until opt-in."""

    chat = models.OneToOneField("chats.Chat", on_delete=models.CASCADE, primary_key=True, related_name="warming")
    enabled = models.BooleanField(default=False)
    interval_seconds = models.PositiveIntegerField(default=_default_interval)
    next_warm_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_warm_at = models.DateTimeField(null=True, blank=True)
    last_cache_pct = models.FloatField(null=True, blank=True)
    warm_count = models.PositiveIntegerField(default=0)
    hit_count = models.PositiveIntegerField(default=0)
    miss_count = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_misses = models.PositiveIntegerField(default=0)
    # Economics: the last warm's cost and the warms paid since the last turn (USD), the prefix size.
    last_warm_cost = models.FloatField(null=True, blank=True)
    idle_warm_cost = models.FloatField(default=0.0)
    prefix_tokens = models.PositiveIntegerField(default=0)
    last_turn_at = models.DateTimeField(null=True, blank=True)
    # The dispatcher's claim: a warm records its result only while its token is still here.
    claim_token = models.CharField(max_length=32, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    enabled_at = models.DateTimeField(null=True, blank=True)  # the last opt-in
    stop_reason = models.CharField(max_length=32, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"warming for {self.chat_id} ({'on' if self.enabled else 'off'})"

    @property
    def cache_retention(self) -> float | None:
        total = self.hit_count + self.miss_count
        return None if total == 0 else self.hit_count / total
