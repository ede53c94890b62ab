"""Every write of spend: a charge in the ledger (with its running totals), a budget, and the checks
that keep spending under it (before a turn, and as it streams)."""

from __future__ import annotations

import datetime
import functools
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import redis
from django.conf import settings
from django.db import connections, router, transaction
from django.utils import timezone

from chats.models import Workspace
from mothership.infra import metrics
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
    three statements whatever their number; an id charged already is left out (and returned
    without it). After commit their live spend is settled, in one Redis round trip."""
    if not specs:
        return []
    unique: dict = {}
    for s in specs:
        unique.setdefault(s.charge_id, s)  # an id twice in one call is charged once
    specs = list(unique.values())
    inserted = _charges_insert(specs)
    fresh = [s for s in specs if s.charge_id in inserted]
    if not fresh:
        return []
    months: dict[tuple, int] = defaultdict(int)
    days: dict[tuple, int] = defaultdict(int)
    for s in fresh:
        scope = s.scope
        months[(scope.workspace_id, scope.month)] += s.cost_nanousd
        if s.user_id is not None:
            days[(scope.workspace_id, scope.user_id, scope.day)] += s.cost_nanousd
    # Rows in one order (sorted): concurrent charges never deadlock on them.
    _totals_add(WorkspaceMonthSpend, ("workspace_id", "month"), sorted(months.items()))
    _totals_add(MemberDaySpend, ("workspace_id", "user_id", "day"), sorted(days.items()))
    transaction.on_commit(lambda: _settle(fresh))
    transaction.on_commit(lambda: _count_spend(fresh))
    return fresh


def _count_spend(specs: list[ChargeSpec]) -> None:
    for s in specs:
        metrics.inc(metrics.SPEND, usd(s.cost_nanousd), label=s.kind)


_CHARGE_COLUMNS = ("id", "kind", "workspace_id", "user_id", "chat_id", "model", "estimated", "cost_nanousd", "at", "created_at")


def _charges_insert(specs: list[ChargeSpec]) -> set[uuid.UUID]:
    """The charges whose id is new, inserted in one statement (``INSERT … ON CONFLICT DO NOTHING
    RETURNING``, PostgreSQL and SQLite alike): the ids it inserted. A racing writer of the same
    id makes this one insert nothing, so it is never counted twice."""
    connection = connections[router.db_for_write(Charge)]
    names = (*_CHARGE_COLUMNS, *TOKEN_FIELDS)
    fields = [Charge._meta.get_field(name) for name in names]  # (an attname such as "user_id" names its field)
    now = timezone.now()
    params = []
    for s in specs:
        values = {
            "id": s.charge_id,
            "kind": s.kind,
            "workspace_id": s.workspace_id,
            "user_id": s.user_id,
            "chat_id": s.chat_id,
            "model": s.model,
            "estimated": s.estimated,
            "cost_nanousd": s.cost_nanousd,
            "at": s.at,
            "created_at": now,
            **{name: s.tokens.get(name, 0) for name in TOKEN_FIELDS},
        }
        params += [field.get_db_prep_save(values[name], connection) for name, field in zip(names, fields, strict=True)]
    qn = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(names)) + ")"
    sql = (
        f"INSERT INTO {qn(Charge._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"VALUES {', '.join([row] * len(specs))} ON CONFLICT ({qn('id')}) DO NOTHING RETURNING {qn('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {Charge._meta.pk.to_python(found) for (found,) in cursor.fetchall()}


def _totals_add(model, key_columns: tuple[str, ...], rows: list[tuple[tuple, int]]) -> None:
    """Add each amount to its running total, the row created the first time: one upsert statement."""
    if not rows:
        return
    connection = connections[router.db_for_write(model)]
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    fields = [model._meta.get_field(c) for c in key_columns]
    cost = model._meta.get_field("cost_nanousd")
    params = []
    for keys, amount in rows:
        params += [f.get_db_prep_save(v, connection) for f, v in zip(fields, keys, strict=True)]
        params.append(amount)
    row = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
    column = qn(cost.column)
    sql = (
        f"INSERT INTO {table} ({', '.join(qn(f.column) for f in fields)}, {column}) VALUES {', '.join([row] * len(rows))} "
        f"ON CONFLICT ({', '.join(qn(f.column) for f in fields)}) DO UPDATE SET {column} = {table}.{column} + excluded.{column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


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


def budget_update(*, workspace_id, user=None, **changes) -> Budget:
    """Change the budgets named in ``changes`` (``monthly_usd``, ``member_daily_usd``; None clears
    one) and keep the other: a partial PUT. Two at once are applied one after the other (the
    workspace's row is locked), so neither loses the other's field."""
    with transaction.atomic():
        Workspace.objects.select_for_update().filter(pk=workspace_id).values_list("pk", flat=True).first()
        current = budget_get(workspace_id=workspace_id)
        values = {
            "monthly_usd": getattr(current, "monthly_usd", None),
            "member_daily_usd": getattr(current, "member_daily_usd", None),
        }
        return budget_set(workspace_id=workspace_id, **{**values, **changes}, user=user)


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


def budget_reserve(
    *, charge: counters.LiveCharge, scope: counters.Scope, chat_id, uncached: int, cached: int, limits: counters.Limits
) -> bool:
    """As a turn starts in the worker: its prompt's cost (``cached`` while the chat's last turn is
    in the provider's prompt cache, else ``uncached``) taken from what the budget has left, or False
    (nothing taken) when it would cross it. Racing turns take it one at a time. One Redis call; the
    ledger is read only for a period counter Redis does not hold (then it is seeded and asked again)."""
    ask = functools.partial(
        counters.claim,
        charge=charge,
        scope=scope,
        last_turn_chat_id=chat_id,
        uncached=uncached,
        cached=cached,
        cache_ttl=settings.MOTHERSHIP_PROMPT_CACHE_TTL,
        limits=limits,
    )
    taken = ask()
    if taken is None:
        budget_spent(scope=scope, limits=limits)
        taken = ask()
    return bool(taken)
