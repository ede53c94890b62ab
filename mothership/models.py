"""What belongs to a person rather than to a workspace: their API tokens and their preferences."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A named API token (``Authorization: Token msk_…``), many per user, each revoked on its own.

    Only the key's SHA-256 is stored (the key is shown once, when it is made); ``prefix`` is its
    first characters, which the settings page shows so that a person can tell their keys apart.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written at most once a minute (``mothership.services.api_token_used``): never a write per request.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class UserPreferences(models.Model):
    class Theme(models.TextChoices):
        SYSTEM = "system", "Same as the system"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences")
    theme = models.CharField(max_length=8, choices=Theme.choices, default=Theme.SYSTEM)
    # The model a new chat of this user starts on while LLM_MODELS still offers it; blank: the deployment's default.
    default_model = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        verbose_name_plural = "user preferences"

    def __str__(self) -> str:
        return f"preferences of {self.user}"
