"""The ledger (one charge per turn and per warm), its running totals, and each workspace's budget.

Money is counted in nano-dollars (``*_nanousd``, integers): a token of a cached prefix costs a
few hundredths of a micro-dollar, and integer sums are exact on every database, so the running
totals always equal the ledger's sums.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

NANOS_PER_USD = 1_000_000_000


def usd(nanousd: int) -> float:
    return nanousd / NANOS_PER_USD


def nanousd(amount: Decimal | float) -> int:
    return int(round(Decimal(str(amount)) * NANOS_PER_USD))


class Budget(models.Model):
    """What a workspace may spend: per calendar month in all, and per member per day (either may be unset)."""

    workspace = models.OneToOneField("chats.Workspace", on_delete=models.CASCADE, primary_key=True, related_name="budget")
    monthly_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    member_daily_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return f"budget of {self.workspace_id}"

    @property
    def monthly_nanousd(self) -> int | None:
        return None if self.monthly_usd is None else nanousd(self.monthly_usd)

    @property
    def member_daily_nanousd(self) -> int | None:
        return None if self.member_daily_usd is None else nanousd(self.member_daily_usd)


class Charge(models.Model):
    """What one turn or one warm cost. Its id is the turn's stream id (or the warm's), so a retried
    seal or a redelivered task never charges twice."""

    class Kind(models.TextChoices):
        TURN = "turn"
        WARM = "warm"

    id = models.UUIDField(primary_key=True, editable=False)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    workspace = models.ForeignKey("chats.Workspace", on_delete=models.CASCADE, related_name="charges")
    # Kept when the user or the chat goes: the money was spent.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    chat = models.ForeignKey("chats.Chat", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=128, blank=True, default="")
    input_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_nanousd = models.BigIntegerField(default=0)
    estimated = models.BooleanField(default=False)  # figures estimated from the text: the provider reported none
    at = models.DateTimeField(db_index=True)  # when it counts: a turn's start, a warm's time (its day and month)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "at"], name="charge_workspace_at"),
            models.Index(fields=["chat", "-created_at"], name="charge_chat_recent"),  # a send's prompt estimate
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}: {usd(self.cost_nanousd):.6f} USD"

    @property
    def cost_usd(self) -> float:
        return usd(self.cost_nanousd)


class WorkspaceMonthSpend(models.Model):
    """Running total: a workspace's charges in one calendar month (``month`` is its first day)."""

    workspace = models.ForeignKey("chats.Workspace", on_delete=models.CASCADE, related_name="+")
    month = models.DateField()
    cost_nanousd = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "month"], name="unique_workspace_month_spend")]


class MemberDaySpend(models.Model):
    """Running total: one member's turns in one workspace on one day."""

    workspace = models.ForeignKey("chats.Workspace", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    cost_nanousd = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "user", "day"], name="unique_member_day_spend")]
