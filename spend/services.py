"""Every write of spend: a charge in the ledger (with its running totals), a budget, and the checks
that keep spending under it (before a turn, and as it streams)."""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import redis
from django.db import IntegrityError, transaction
from django.db.models import F

from spend import counters
from spend.models import Budget, Charge, MemberDaySpend, WorkspaceMonthSpend, usd
from spend.selectors import budget_get, budget_limits, ledger_totals

logger = logging.getLogger(__name__)

TOKEN_FIELDS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")


class BudgetExceeded(Exception):
    """The workspace's monthly budget, or the member's daily one, has no room for this."""

    code = "budget_exceeded"


@dataclass(frozen=True)
class ChargeSpec:
    """One charge to write: a turn's (its stream id) or a warm's (its warm id)."""

    charge_id: uuid.UUID
    kind: str
    workspace_id: object
    user_id: int | None
    chat_id: object
    model: str
    tokens: dict[str, int]
    estimated: bool
    cost_nanousd: int
    at: datetime.datetime

    @property
    def scope(self) -> counters.Scope:
        return counters.Scope.of(workspace_id=self.workspace_id, user_id=self.user_id, at=self.at)


def charge_record(**spec) -> bool:
    """``charges_record`` of one charge: False when its id was charged already."""
    return bool(charges_record([ChargeSpec(**spec)]))


def charges_record(specs: list[ChargeSpec]) -> list[ChargeSpec]:
    """Write these charges and add them to their running totals, in the caller's transaction, in
    a few statements whatever their number; an id charged already is left out (and returned
    without it). After commit their live spend is settled, in one Redis round trip."""
    if not specs:
        return []
    already = set(Charge.objects.filter(pk__in=[s.charge_id for s in specs]).values_list("pk", flat=True))
    fresh = [s for s in specs if s.charge_id not in already]
    if not fresh:
        return []
    try:
        with transaction.atomic():  # a savepoint: a charge written meanwhile by a racing seal changes nothing
            Charge.objects.bulk_create(
                [
                    Charge(
                        id=s.charge_id,
                        kind=s.kind,
                        workspace_id=s.workspace_id,
                        user_id=s.user_id,
                        chat_id=s.chat_id,
                        model=s.model,
                        estimated=s.estimated,
                        cost_nanousd=s.cost_nanousd,
                        at=s.at,
                        **{name: s.tokens.get(name, 0) for name in TOKEN_FIELDS},
                    )
                    for s in fresh
                ]
            )
    except IntegrityError:
        return []
    months: dict[tuple, int] = defaultdict(int)
    days: dict[tuple, int] = defaultdict(int)
    for s in fresh:
        scope = s.scope
        months[(s.workspace_id, scope.month)] += s.cost_nanousd
        if s.user_id is not None:
            days[(s.workspace_id, s.user_id, scope.day)] += s.cost_nanousd
    # One order (months, then members' days, each sorted): concurrent charges never deadlock.
    for (workspace_id, month), amount in sorted(months.items(), key=str):
        _add(WorkspaceMonthSpend, {"workspace_id": workspace_id, "month": month}, amount)
    for (workspace_id, user_id, day), amount in sorted(days.items(), key=str):
        _add(MemberDaySpend, {"workspace_id": workspace_id, "user_id": user_id, "day": day}, amount)
    transaction.on_commit(lambda: _settle(fresh))
    return fresh


def _add(model, keys: dict, amount: int) -> None:
    """Add to a running total, creating its row the first time (a racing creator's row is added to)."""
    if model.objects.filter(**keys).update(cost_nanousd=F("cost_nanousd") + amount):
        return
    try:
        with transaction.atomic():
            model.objects.create(**keys, cost_nanousd=amount)
    except IntegrityError:
        model.objects.filter(**keys).update(cost_nanousd=F("cost_nanousd") + amount)


def _settle(specs: list[ChargeSpec]) -> None:
    sealed_at_ms = int(time.time() * 1000)
    try:
        counters.settle_many(
            [
                (
                    s.charge_id,
                    s.scope,
                    s.cost_nanousd,
                    counters.LastTurn(str(s.chat_id), sum(s.tokens.values()), sealed_at_ms)
                    if s.kind == Charge.Kind.TURN and s.chat_id
                    else None,
                )
                for s in specs
            ]
        )
    except redis.RedisError:
        # The ledger holds the charges; the live counters keep the turns' live figures until Redis
        # loses them and they are seeded again from the ledger.
        logger.warning("spend of %d charges not settled in Redis", len(specs), exc_info=True)


def budget_set(*, workspace_id, monthly_usd: Decimal | None, member_daily_usd: Decimal | None, user=None) -> Budget:
    """Set (or clear, with None) a workspace's budgets; turns already streaming are held to them."""
    with transaction.atomic():
        budget, _ = Budget.objects.update_or_create(
            workspace_id=workspace_id,
            defaults={"monthly_usd": monthly_usd, "member_daily_usd": member_daily_usd, "updated_by": user},
        )
        limits = budget_limits(budget)
        transaction.on_commit(lambda: counters.limits_set(workspace_id=workspace_id, limits=limits))
    return budget


def budget_clear(*, workspace_id) -> None:
    """No budget any more: deleted, and Redis's copy with it (after commit)."""
    with transaction.atomic():
        Budget.objects.filter(workspace_id=workspace_id).delete()
        transaction.on_commit(lambda: counters.limits_set(workspace_id=workspace_id, limits=counters.Limits()))


def budget_spent(*, scope: counters.Scope, limits: counters.Limits) -> tuple[int, int]:
    """What ``scope`` has spent, turns in flight included (seeded from the ledger where Redis has nothing)."""
    return counters.spent(scope, seed=ledger_totals, limits=limits)


def budget_check(
    *, workspace_id, user_id, chat_id, at: datetime.datetime, prompt_nanousd: Callable[[counters.LastTurn | None], int]
) -> None:
    """Before a turn: ``BudgetExceeded`` if its prompt alone (``prompt_nanousd(the chat's last
    turn, None when Redis has none)``, asked only when there is a budget) would take the workspace
    past its monthly budget or the member past their daily one. One Redis round trip: the budget,
    the spend and the chat's last turn; the database only where Redis has lost them (the budget
    and the counters are written back)."""
    scope = counters.Scope.of(workspace_id=workspace_id, user_id=user_id, at=at)
    reading = counters.read(scope, chat_id=chat_id)
    limits, month, day = reading.limits, reading.month, reading.day
    if limits is None:
        limits = budget_limits(budget_get(workspace_id=workspace_id))
        counters.limits_set(workspace_id=workspace_id, limits=limits, if_missing=True)
    if not limits.any:
        return
    if month is None or (user_id is not None and day is None):
        month, day = budget_spent(scope=scope, limits=limits)
    amount_nanousd = prompt_nanousd(reading.last_turn)
    if limits.month is not None and month + amount_nanousd > limits.month:
        raise BudgetExceeded(_refusal("This workspace", month, limits.month, f"budget for {scope.month:%B}", amount_nanousd))
    if limits.day is not None and user_id is not None and day + amount_nanousd > limits.day:
        raise BudgetExceeded(_refusal("You", day, limits.day, "daily budget in this workspace", amount_nanousd))


def _refusal(who: str, spent: int, limit: int, which: str, amount: int) -> str:
    verb = "have" if who == "You" else "has"
    return (
        f"{who} {verb} spent ${usd(spent):.2f} of the ${usd(limit):.2f} {which}; this reply's prompt alone would cost "
        f"about ${usd(amount):.4f}. A workspace owner can raise the budget on the dashboard."
    )


def budget_reserve(*, charge_id, scope: counters.Scope, amount_nanousd: int, limits: counters.Limits) -> bool:
    """As a turn starts in the worker: its prompt's cost, taken from what the budget has left, or
    False (nothing taken) when it would cross it. Racing turns take it one at a time."""
    budget_spent(scope=scope, limits=limits)  # the counters exist (seeded) before they are checked
    return counters.reserve(charge_id=charge_id, scope=scope, amount=amount_nanousd, limits=limits)
