"""What a turn spends, against its workspace's budget: its prompt checked before it is queued,
taken from the budget as the worker starts it, its output charged frame by frame, and its
charge written to the ledger by its seal (whoever seals it)."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from chats.models import Chat
from chats.selectors import conversation_size
from spend import counters
from spend.models import Budget, Charge
from spend.selectors import budget_limits, last_turn_charge
from spend.services import budget_check, budget_reserve, charge_record
from streams.models import Stream
from streams.providers import Usage
from streams.providers.attachments import attachment_tokens
from streams.providers.base import CHARS_PER_TOKEN, TOKENS_PER_MESSAGE, estimate_tokens
from streams.providers.pricing import prices, usage_cost_nanousd


def _within_cache_ttl(sealed_at: datetime.datetime) -> bool:
    return (timezone.now() - sealed_at).total_seconds() <= settings.MOTHERSHIP_PROMPT_CACHE_TTL


def prompt_nanousd(*, model: str, tokens: int, cached_tokens: int) -> int:
    """A prompt's cost at ``model``'s prices, its cached part at the cache-read price."""
    p = prices(model)
    cached = min(cached_tokens, tokens)
    return round(((tokens - cached) * p["input"] + cached * p["cache_read"]) * 1000)


def _conversation_tokens(chat: Chat, last_turn: counters.LastTurn | None) -> tuple[int, bool]:
    """The conversation's tokens so far and whether the provider likely still caches them, from
    the chat's last charged turn (its prompt and its reply were the whole conversation then; it
    was sealed within ``MOTHERSHIP_PROMPT_CACHE_TTL``): Redis's copy, else one indexed read. A
    chat never charged (its turns predate the ledger) is measured from its messages instead."""
    if last_turn is not None:
        sealed_at = datetime.datetime.fromtimestamp(last_turn.sealed_at_ms / 1000, tz=datetime.UTC)
        return last_turn.tokens, _within_cache_ttl(sealed_at)
    last = last_turn_charge(chat_id=chat.pk)
    if last is not None:
        tokens, sealed_at = last
        return tokens, _within_cache_ttl(sealed_at)
    chars, count = conversation_size(chat_id=chat.pk, leaf_id=chat.leaf_id)  # an estimate: the chat as the request read it
    system = (estimate_tokens(chat.system_prompt) + TOKENS_PER_MESSAGE) if chat.system_prompt else 0
    return (chars // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * count if count else 0) + system, False


def turn_budget_check(*, chat: Chat, user, content: str, model: str, attached_tokens: int = 0) -> None:
    """Before a turn is queued: ``spend.services.BudgetExceeded`` when its prompt alone (the
    conversation, the system prompt, ``content`` and its files' ``attached_tokens``, estimated)
    would cross a budget. One Redis round trip (the database only for what Redis has lost)."""

    def prompt(last_turn: counters.LastTurn | None) -> int:
        before, cache_alive = _conversation_tokens(chat, last_turn)
        tokens = before + estimate_tokens(content) + attached_tokens + TOKENS_PER_MESSAGE
        return prompt_nanousd(model=model, tokens=tokens, cached_tokens=before if cache_alive else 0)

    budget_check(
        workspace_id=chat.workspace_id,
        user_id=getattr(user, "pk", None),
        chat_id=chat.pk,
        at=timezone.now(),
        prompt_nanousd=prompt,
    )


def prompt_tokens(messages: list[dict]) -> int:
    """A prompt's tokens, estimated: its text, a tool call's arguments, and each message's own few."""
    return sum(
        estimate_tokens(m.get("content") or "")
        + sum(estimate_tokens(json.dumps(c.get("arguments", {}))) for c in m.get("tool_calls") or ())
        + attachment_tokens(m)
        + TOKENS_PER_MESSAGE
        for m in messages
    )


@dataclass(frozen=True)
class TurnBudget:
    """A streaming turn's place in the budget: where it counts, the limits read at its claim
    (Redis's copy, when it has one, wins), and what one output token costs."""

    charge_id: object
    scope: counters.Scope
    limits: counters.Limits
    output_nanousd_per_token: float
    live: counters.LiveCharge  # what each frame's charge sends Redis (its keys, built once)

    @classmethod
    def of(cls, stream: Stream) -> TurnBudget:
        try:
            budget = stream.chat.workspace.budget  # read with the claim
        except Budget.DoesNotExist:
            budget = None
        scope = counters.Scope.of(workspace_id=stream.chat.workspace_id, user_id=stream.started_by_id, at=stream.created_at)
        limits = budget_limits(budget)
        return cls(
            charge_id=stream.pk,
            scope=scope,
            limits=limits,
            output_nanousd_per_token=prices(stream.model)["output"] * 1000,
            live=counters.LiveCharge.of(charge_id=stream.pk, scope=scope, limits=limits),
        )

    def reserve_prompt(self, *, stream: Stream, history: list[dict]) -> bool:
        """Take the prompt's cost from the budget before the model is called; False: it would cross
        it. All but its last message are priced as cache reads if the chat's last turn (Redis's
        record of it) was sealed within the prompt cache's lifetime."""
        tokens = prompt_tokens(history)
        cached = tokens - estimate_tokens(history[-1].get("content", "")) - TOKENS_PER_MESSAGE if history else 0
        return budget_reserve(
            charge=self.live,
            scope=self.scope,
            chat_id=stream.chat_id,
            uncached=prompt_nanousd(model=stream.model, tokens=tokens, cached_tokens=0),
            cached=prompt_nanousd(model=stream.model, tokens=tokens, cached_tokens=cached),
            limits=self.limits,
        )

    def reserve_round(self, *, stream: Stream, messages: list[dict], cached: list[dict]) -> bool:
        """A later round's prompt (after tool calls) taken from the live spend; False (nothing
        taken) when it would cross the budget. What the round before sent is priced as a cache read."""
        tokens = prompt_tokens(messages)
        amount = prompt_nanousd(model=stream.model, tokens=tokens, cached_tokens=min(tokens, prompt_tokens(cached)))
        ((over, _room),) = counters.charge_many([(self.live, amount)], gate=True)
        return not over

    def output_nanousd(self, tokens: int) -> int:
        return round(tokens * self.output_nanousd_per_token)


def turn_charge_record(*, stream: Stream, usage: Usage) -> None:
    """In the seal's transaction: the turn's charge, at what it used (reported, else estimated)."""
    workspace_id = (
        stream.chat.workspace_id
        if Stream.chat.is_cached(stream)
        else Chat.objects.filter(pk=stream.chat_id).values_list("workspace_id", flat=True).first()
    )
    if workspace_id is None:  # the chat is gone (deleted mid-turn): so is its workspace's ledger row
        return
    charge_record(
        charge_id=stream.pk,
        kind=Charge.Kind.TURN,
        workspace_id=workspace_id,
        user_id=stream.started_by_id,
        chat_id=stream.chat_id,
        model=stream.model,
        tokens=usage.as_dict(),
        estimated=usage.estimated,
        cost_nanousd=usage_cost_nanousd(usage, stream.model),
        at=stream.created_at,
    )
