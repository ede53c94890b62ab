"""Reads of spend: a budget and what it has left, the running totals, the report by period."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Count, Q, Sum
from django.utils import timezone

from spend import counters
from spend.models import Budget, Charge, MemberDaySpend, WorkspaceMonthSpend, usd


def budget_limits(budget: Budget | None) -> counters.Limits:
    if budget is None:
        return counters.Limits()
    return counters.Limits(month=budget.monthly_nanousd, day=budget.member_daily_nanousd)


def budget_get(*, workspace_id) -> Budget | None:
    return Budget.objects.filter(workspace_id=workspace_id).first()


def budgets_of(*, workspace_ids) -> dict:
    """Workspace id → its budget, for those of ``workspace_ids`` that have one (one query)."""
    return {b.workspace_id: b for b in Budget.objects.filter(workspace_id__in=list(workspace_ids))} if workspace_ids else {}


def last_turn_charge(*, chat_id) -> tuple[int, datetime.datetime] | None:
    """The tokens of the chat's last charged turn (prompt and reply) and when it was charged (its seal)."""
    row = (
        Charge.objects.filter(chat_id=chat_id, kind=Charge.Kind.TURN)
        .order_by("-created_at")
        .values_list("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "created_at")
        .first()
    )
    return (sum(row[:4]), row[4]) if row else None


def ledger_totals(scope: counters.Scope) -> tuple[int, int | None]:
    """The running totals of ``scope`` (what the ledger holds: sealed turns and warms)."""
    month = (
        WorkspaceMonthSpend.objects.filter(workspace_id=scope.workspace_id, month=scope.month)
        .values_list("cost_nanousd", flat=True)
        .first()
    )
    day = None
    if scope.user_id is not None:
        day = (
            MemberDaySpend.objects.filter(workspace_id=scope.workspace_id, user_id=scope.user_id, day=scope.day)
            .values_list("cost_nanousd", flat=True)
            .first()
        )
    return month or 0, day or 0


@dataclass(frozen=True)
class BudgetStatus:
    monthly_usd: float | None
    member_daily_usd: float | None
    spent_month_usd: float  # the workspace, this month (turns and warms)
    spent_today_usd: float  # the asking member's turns today
    workspace_spent_today_usd: float  # every member's turns and every warm today
    workspace_spent_7d_usd: float  # the same over the last 7 days, today included

    @property
    def month_share(self) -> float | None:
        return _share(self.spent_month_usd, self.monthly_usd)

    @property
    def today_share(self) -> float | None:
        return _share(self.spent_today_usd, self.member_daily_usd)

    @property
    def notices(self) -> list[dict]:
        """What the dashboard warns of: a budget 80 % spent (``warning``), or spent (``exceeded``)."""
        found = []
        for share, which, stops in (
            (self.month_share, "this month's workspace budget", "New replies and cache warming wait for next month"),
            (self.today_share, "your daily budget", "Your new replies wait for tomorrow (UTC)"),
        ):
            if share is None:
                continue
            if share >= 1:
                found.append(
                    {
                        "level": "exceeded",
                        "text": f"{which[0].upper()}{which[1:]} is spent. {stops}, or until an owner raises it.",
                    }
                )
            elif share >= NOTICE_SHARE:
                found.append({"level": "warning", "text": f"{round(share * 100)} % of {which} is spent."})
        return found


NOTICE_SHARE = 0.8  # the dashboard warns from this share of a budget on


def _share(spent: float, limit: float | None) -> float | None:
    if limit is None:
        return None
    return 1.0 if limit == 0 else spent / limit


def budget_status(*, workspace_id, user_id, now=None) -> BudgetStatus:
    """A workspace's budget and its spend from the ledger (three short queries): the month's
    running total, and the charges of today (the member's and everyone's) and of 7 days summed."""
    scope = counters.Scope.of(workspace_id=workspace_id, user_id=user_id, at=now or timezone.now())
    budget = budget_get(workspace_id=workspace_id)
    month, _ = ledger_totals(counters.Scope(scope.workspace_id, None, scope.month, scope.day))
    start = datetime.datetime.combine(scope.day, datetime.time(), tzinfo=timezone.get_current_timezone())
    end = start + datetime.timedelta(days=1)
    today = Charge.objects.filter(workspace_id=workspace_id, at__gte=end - datetime.timedelta(days=7), at__lt=end).aggregate(
        week=Sum("cost_nanousd"),
        everyone=Sum("cost_nanousd", filter=Q(at__gte=start)),
        mine=Sum("cost_nanousd", filter=Q(at__gte=start, user_id=user_id)),
    )
    return BudgetStatus(
        monthly_usd=float(budget.monthly_usd) if budget and budget.monthly_usd is not None else None,
        member_daily_usd=float(budget.member_daily_usd) if budget and budget.member_daily_usd is not None else None,
        spent_month_usd=usd(month),
        spent_today_usd=usd(today["mine"] or 0),
        workspace_spent_today_usd=usd(today["everyone"] or 0),
        workspace_spent_7d_usd=usd(today["week"] or 0),
    )


def spend_report(*, since: datetime.datetime, until: datetime.datetime, workspace_id=None) -> list[dict]:
    """The ledger between ``since`` and ``until``, by workspace, user and model (warms have no user)."""
    charges = Charge.objects.filter(at__gte=since, at__lt=until)
    if workspace_id is not None:
        charges = charges.filter(workspace_id=workspace_id)
    rows = (
        charges.values("workspace_id", "workspace__name", "user_id", "user__username", "model", "kind")
        .annotate(
            charges=Count("id"),
            cost=Sum("cost_nanousd"),
            input_tokens=Sum("input_tokens"),
            cache_read_tokens=Sum("cache_read_tokens"),
            cache_write_tokens=Sum("cache_write_tokens"),
            output_tokens=Sum("output_tokens"),
        )
        .order_by("workspace__name", "workspace_id", "user__username", "model", "kind")
    )
    return [
        {
            "workspace_id": str(row["workspace_id"]),
            "workspace": row["workspace__name"],
            "user": row["user__username"],
            "model": row["model"],
            "kind": row["kind"],
            "charges": row["charges"],
            "cost_usd": usd(row["cost"] or 0),
            **{name: row[name] or 0 for name in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")},
        }
        for row in rows
    ]
