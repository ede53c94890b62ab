"""What warms spend: each checked against its workspace's monthly budget before it is sent, and
charged to the ledger when it is recorded (warms belong to no member: only the month counts)."""

from __future__ import annotations

import datetime
import uuid

from django.conf import settings
from django.utils import timezone

from spend import counters
from spend.models import Charge
from spend.selectors import budget_limits, budgets_of
from spend.services import ChargeSpec, budget_spent, charges_record
from streams.providers import Usage
from streams.providers.base import TOKENS_PER_MESSAGE, estimate_tokens
from streams.providers.pricing import prices, usage_cost_nanousd
from streams.services.spending import prompt_nanousd


def warm_id(*, chat_id, token: str) -> uuid.UUID:
    """A warm's charge id: one per claim (a redelivered batch carries the same claim)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mothership:warm:{chat_id}:{token}")


def warm_nanousd(*, model: str, prefix: list[dict], cached: bool) -> int:
    """What a warm of ``prefix`` should cost: its prompt (read from the cache while it is alive)
    and one output token."""
    tokens = sum(estimate_tokens(m.get("content", "")) + TOKENS_PER_MESSAGE for m in prefix)
    return prompt_nanousd(model=model, tokens=tokens, cached_tokens=tokens if cached else 0) + round(
        prices(model)["output"] * 1000
    )


def warms_over_budget(*, prefixes: dict, workspaces: dict, models: dict, cached_since: dict, now=None) -> set:
    """The chats (of ``prefixes``) whose warm would take their workspace past its monthly budget,
    counting the warms of the batch before it: one query, and (with a budget) one Redis round
    trip for the chats' last turns and one per budgeted workspace."""
    now = now or timezone.now()
    budgets = budgets_of(workspace_ids={workspaces[c] for c in prefixes})
    budgeted = [c for c in prefixes if budget_limits(budgets.get(workspaces[c])).month is not None]
    # A turn that ended before warming was turned on is no warm's nor the schedule's: its seal says when.
    turns = counters.last_turns(budgeted)
    left: dict = {}
    over = set()
    for chat_id in budgeted:
        prefix, workspace_id = prefixes[chat_id], workspaces[chat_id]
        limits = budget_limits(budgets.get(workspace_id))
        if workspace_id not in left:
            month, _ = budget_spent(scope=counters.Scope.of(workspace_id=workspace_id, user_id=None, at=now), limits=limits)
            left[workspace_id] = limits.month - month
        since = cached_since.get(chat_id)
        if (turn := turns.get(str(chat_id))) is not None:
            sealed = datetime.datetime.fromtimestamp(turn.sealed_at_ms / 1000, tz=datetime.UTC)
            since = max(since, sealed) if since else sealed
        cached = since is not None and (now - since) <= datetime.timedelta(seconds=settings.MOTHERSHIP_PROMPT_CACHE_TTL)
        cost = warm_nanousd(model=models[chat_id], prefix=prefix, cached=cached)
        if cost > left[workspace_id]:
            over.add(chat_id)
        else:
            left[workspace_id] -= cost
    return over


def warm_charges(*, token: str, usages: dict[uuid.UUID, Usage], models: dict, workspaces: dict, at) -> None:
    """In the batch's transaction: one charge per recorded warm."""
    charges_record(
        [
            ChargeSpec(
                charge_id=warm_id(chat_id=chat_id, token=token),
                kind=Charge.Kind.WARM,
                workspace_id=workspaces[chat_id],
                user_id=None,
                chat_id=chat_id,
                model=models.get(chat_id, ""),
                tokens=usage.as_dict(),
                estimated=usage.estimated,
                cost_nanousd=usage_cost_nanousd(usage, models.get(chat_id, "")),
                at=at,
            )
            for chat_id, usage in usages.items()
        ]
    )
