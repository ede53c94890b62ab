"""Server-side warming: the beat-ticked dispatcher, the warm itself, its stats and stop rules.

The dispatcher claims due schedules with ``SELECT … FOR UPDATE SKIP LOCKED`` in batches and
stamps each claimed row with a claim token; one Celery message carries a whole batch. A warm
records its result only if its claim token is still the row's, so two dispatchers (or a
re-claim after a lost message) never warm a conversation twice, and a warm that lands after a
close or a turn changes nothing. The row is never locked while the model is called.

A batch costs a handful of queries and Redis round trips whatever its size: its claimed rows,
their liveness locks (one MGET) and their prefixes are read once, the model warms them all (the
local model's Redis work in one pipeline), one transaction records every result, and after its
commit one read and one pipeline push them.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chats.selectors import conversation_prefixes
from mothership.infra import bulk, metrics
from mothership.infra.secrets import mask
from streams import locks
from streams.providers import Provider, ProviderError, Usage, get_provider, model_for
from streams.providers.pricing import prices, usage_cost
from streams.tools import offered_tools
from warming.models import WarmingSchedule
from warming.services import warming_push, warming_push_many
from warming.spending import warm_charges, warms_over_budget

logger = logging.getLogger(__name__)

# A claim older than this is presumed lost (its message expired, its worker died) and the row
# is due again.
CLAIM_LEASE = datetime.timedelta(seconds=60)


# --- prices and stop rules ----------------------------------------------------------------


def rebuild_cost(prefix_tokens: int, model: str) -> float:
    """What letting the cache expire costs: writing the prefix to the cache once more."""
    return prefix_tokens * prices(model)["cache_write"] / 1_000_000


# --- the dispatcher ---------------------------------------------------------------------


@dataclass(frozen=True)
class WarmResult:
    chat_id: str
    outcome: str  # "warmed" | "failed" | "skipped_streaming" | "superseded" | "empty" | "queued"


def warming_dispatch_due(*, now=None, batch_size: int | None = None, enqueue=None, max_batches: int = 1000) -> dict:
    """Claim every due schedule, a batch per statement, and send one Celery message per batch."""
    from warming.tasks import warm_batch  # the task module imports this one

    now = now or timezone.now()
    batch_size = batch_size or settings.MOTHERSHIP_WARMING_BATCH
    enqueue = enqueue or (lambda ids, token: warm_batch.apply_async(args=[ids, token], expires=CLAIM_LEASE.total_seconds()))
    report = {"claimed": 0, "batches": 0}
    for _ in range(max_batches):
        token = uuid.uuid4().hex
        with transaction.atomic():
            due = list(
                # Only the schedule rows are locked (not the joined chats a turn may be locking).
                WarmingSchedule.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(enabled=True, next_warm_at__lte=now, chat__active_stream_id__isnull=True)
                .exclude(claimed_at__gt=now - CLAIM_LEASE)
                .order_by("next_warm_at")
                .values_list("chat_id", flat=True)[:batch_size]
            )
            if not due:
                break
            WarmingSchedule.objects.filter(chat_id__in=due).update(claim_token=token, claimed_at=now)
        enqueue([str(chat_id) for chat_id in due], token)
        report["claimed"] += len(due)
        report["batches"] += 1
        if len(due) < batch_size:
            break
    return report


def claim_one(*, chat_id) -> str:
    """Claim one schedule for an immediate warm (see ``warming_warm_now``)."""
    token = uuid.uuid4().hex
    WarmingSchedule.objects.get_or_create(chat_id=chat_id)
    WarmingSchedule.objects.filter(chat_id=chat_id).update(claim_token=token, claimed_at=timezone.now())
    return token


def warming_warm_now(*, chat_id, inline: bool = False) -> WarmResult:
    """One warm now, whether or not warming is on: the socket's ``warm-now``, the admin, ``manage.py warm_now``.

    Refused (``skipped_streaming``) while a turn streams: its end refreshes the cache anyway.
    ``inline`` runs it in this process and answers its outcome; otherwise one task goes to the
    worker (``queued``) and its result arrives as a surface update.
    """
    from warming.tasks import warm_batch  # the task module imports this one

    if locks.lock_owner(chat_id=chat_id) is not None:
        return WarmResult(str(chat_id), "skipped_streaming")
    token = claim_one(chat_id=chat_id)
    if inline:
        return warm_run(chat_id=chat_id, token=token)
    warm_batch.apply_async(args=[[str(chat_id)], token], expires=CLAIM_LEASE.total_seconds())
    return WarmResult(str(chat_id), "queued")


# --- the warm -----------------------------------------------------------------------------


def warm_run(*, chat_id, token: str) -> WarmResult:
    """Warm one conversation's prefix: a batch of one (``warm_batch_run``)."""
    (result,) = warm_batch_run(chat_ids=[chat_id], token=token)
    return result


# Every column a batch may write (a warm's stats, the next warm, the stop rules, the claim).
_RECORDED_FIELDS = [
    "enabled",
    "next_warm_at",
    "last_warm_at",
    "last_cache_pct",
    "warm_count",
    "hit_count",
    "miss_count",
    "consecutive_failures",
    "consecutive_misses",
    "last_warm_cost",
    "idle_warm_cost",
    "prefix_tokens",
    "claim_token",
    "claimed_at",
    "stop_reason",
    "last_error",
    "updated_at",
]


def warm_batch_run(*, chat_ids, token: str) -> list[WarmResult]:
    """Warm the conversations of one claimed batch, record every result, then push (see the module).

    Nothing is spent on a claim that is no longer the row's; each result is recorded only where
    the row still carries this claim when the batch's transaction reads it under a row lock.
    """
    ids = list(dict.fromkeys(uuid.UUID(str(chat_id)) for chat_id in chat_ids))
    # The claims, with what each chat's warm sends besides its messages: its system prompt, model and tools.
    rows = WarmingSchedule.objects.filter(chat_id__in=ids, claim_token=token)
    chats, workspaces, recent, tool_patterns, leaves = {}, {}, {}, {}, {}
    for chat_id, system, model_id, tools, workspace_id, leaf_id, *last in rows.values_list(
        "chat_id",
        "chat__system_prompt",
        "chat__model_id",
        "chat__tools",
        "chat__workspace_id",
        "chat__leaf_id",
        "last_warm_at",
        "last_turn_at",
    ):
        chats[chat_id], workspaces[chat_id], tool_patterns[chat_id] = (system, model_id), workspace_id, tools
        leaves[chat_id] = leaf_id
        recent[chat_id] = max(filter(None, last), default=None)
    claimed = set(chats)
    outcomes: dict[uuid.UUID, str] = {}
    if claimed:
        owners = locks.lock_owners([chat_id for chat_id in ids if chat_id in claimed])
        # No warm while a turn streams: its claim is given back, and its seal reschedules it.
        streaming = {chat_id for chat_id in claimed if owners[str(chat_id)] is not None}
        prefixes = conversation_prefixes(
            chat_ids=[c for c in ids if c in claimed and c not in streaming],
            systems={c: system for c, (system, _) in chats.items()},
            leaves=leaves,
        )
        # Nothing to cache yet: rescheduled, and the model is not called.
        empty = {chat_id for chat_id, messages in prefixes.items() if not messages}
        model_names, results = {}, {}
        to_warm = {c: messages for c, messages in prefixes.items() if messages}
        # Each warm checked against its workspace's monthly budget first: one that would cross it
        # is not sent, and its warming stops (``budget``).
        over_budget = warms_over_budget(
            prefixes=to_warm,
            workspaces=workspaces,
            models={c: model_for(chats[c][1] or None).model for c in to_warm},
            cached_since=recent,
        )
        to_warm = {c: messages for c, messages in to_warm.items() if c not in over_budget}
        if to_warm:
            # Each conversation with its own chat's model: one provider call per model of the batch.
            by_model: dict[str, dict] = {}
            for chat_id, messages in to_warm.items():
                by_model.setdefault(model_for(chats[chat_id][1] or None).id, {})[chat_id] = messages
            for model_id, group in by_model.items():
                provider = get_provider(model_id)
                model_names.update(dict.fromkeys(group, provider.model))
                results.update(_warm_many(provider, group, tool_patterns))
        outcomes = _record_batch(
            token,
            streaming=streaming,
            empty=empty,
            over_budget=over_budget,
            results=results,
            models=model_names,
            workspaces=workspaces,
        )
    warms = [WarmResult(str(chat_id), outcomes.get(chat_id, "superseded")) for chat_id in ids]
    for warm in warms:
        metrics.inc(metrics.WARMS, label=warm.outcome)
    return warms


def _warm_many(
    provider: Provider, prefixes: dict[uuid.UUID, list[dict]], tool_patterns: dict[uuid.UUID, list]
) -> dict[uuid.UUID, Usage | str]:
    """Each conversation's usage, or the reason its warm failed: a warm never takes the worker down.
    A model that is sent tool definitions is sent each chat's, as its next turn sends them."""
    chat_ids = list(prefixes)
    try:
        if getattr(provider, "takes_tool_definitions", False):
            tools = [offered_tools(tool_patterns.get(chat_id)) for chat_id in chat_ids]
            answers = provider.warm_many(prefixes=list(prefixes.values()), tools=tools)
        else:
            answers = provider.warm_many(prefixes=list(prefixes.values()))
        if len(answers) != len(chat_ids):
            raise ValueError(f"the model answered {len(answers)} warms for {len(chat_ids)} prefixes")
    except ProviderError as exc:
        answers = [exc] * len(chat_ids)
    except Exception as exc:  # the whole batch failed: visible on each schedule, logged once
        logger.exception("warm of a batch of %d conversations failed", len(chat_ids))
        return dict.fromkeys(chat_ids, _reason(exc))
    results: dict[uuid.UUID, Usage | str] = {}
    for chat_id, answer in zip(chat_ids, answers):
        if isinstance(answer, ProviderError):
            results[chat_id] = answer.reason or "provider error"  # never an empty reason
        elif isinstance(answer, Exception):
            logger.error("warm of chat %s failed", chat_id, exc_info=answer)
            results[chat_id] = _reason(answer)
        else:
            results[chat_id] = answer
    return results


# What a user is shown of an unexpected failure: a fixed phrase (its exception, which may name
# internal hosts and ports, goes to the log with its traceback, where it was just written).
INTERNAL_FAILURE = "The warm failed on the server; the details are in its log."


def _reason(exc: Exception) -> str:
    return INTERNAL_FAILURE


def _record_batch(
    token: str,
    *,
    streaming: set,
    empty: set,
    over_budget: set,
    results: dict[uuid.UUID, Usage | str],
    models: dict[uuid.UUID, str],
    workspaces: dict[uuid.UUID, object],
) -> dict:
    """One transaction for the whole batch: each row's outcome, written only where it still carries
    ``token``, and each warm's charge in the ledger (its id from the claim: a batch run again
    finds its claims gone and charges nothing).

    After the commit every recorded conversation but those given back to a streaming turn is pushed.
    """
    now = timezone.now()
    outcomes: dict[uuid.UUID, str] = {}
    lateness: list[float] = []  # of the warms that were due (a warm-now of a schedule not yet due is not late)
    with transaction.atomic():
        # CAS per row, under its row lock: a close, a disable, a re-claim or a sealed turn that
        # voided the claim meanwhile leaves the row out, so nothing is recorded there.
        rows = list(
            WarmingSchedule.objects.select_for_update().filter(
                chat_id__in=[*streaming, *empty, *over_budget, *results], claim_token=token
            )
        )
        for schedule in rows:
            chat_id = schedule.chat_id
            schedule.claim_token, schedule.claimed_at = "", None
            if chat_id in streaming:
                outcomes[chat_id] = "skipped_streaming"  # only the claim given back
                continue
            schedule.updated_at = now
            if chat_id in empty:
                schedule.next_warm_at = now + datetime.timedelta(seconds=schedule.interval_seconds) if schedule.enabled else None
                outcomes[chat_id] = "empty"
            elif chat_id in over_budget:
                _stop(schedule, "budget")
                outcomes[chat_id] = "budget"
            else:
                if schedule.next_warm_at is not None and schedule.next_warm_at <= now:
                    lateness.append((now - schedule.next_warm_at).total_seconds())
                outcomes[chat_id] = _apply_warm(schedule, results[chat_id], models.get(chat_id, ""), now)
        bulk.update_by_pk(rows, _RECORDED_FIELDS)  # one statement: each row's own values, by primary key
        warmed = {c: results[c] for c, outcome in outcomes.items() if outcome == "warmed"}
        warm_charges(token=token, usages=warmed, models=models, workspaces=workspaces, at=now)
        pushed = [chat_id for chat_id, outcome in outcomes.items() if outcome != "skipped_streaming"]
        if pushed:
            transaction.on_commit(lambda: warming_push_many(chat_ids=pushed))  # saved first, then pushed (CR-4b)
        transaction.on_commit(lambda: _count_lateness(lateness))
    return outcomes


def _count_lateness(lateness: list[float]) -> None:
    for late in lateness:
        metrics.observe(metrics.WARM_LATENESS, late)


def _apply_warm(schedule: WarmingSchedule, result: Usage | str, model: str, now) -> str:
    """A warm's usage (or its failure's reason) applied to its row, then the next warm and the stop rules."""
    if isinstance(result, str):
        schedule.consecutive_failures += 1
        schedule.last_error = mask(result)  # the panel's lastError: a provider's words, never a key
        outcome = "failed"
    else:
        _apply_usage(schedule, result, model, now)
        outcome = "warmed"
    # The future next warm, saved before the update is pushed (CR-4b). A one-off warm of a
    # disabled schedule (warm-now) schedules nothing.
    schedule.next_warm_at = now + datetime.timedelta(seconds=schedule.interval_seconds) if schedule.enabled else None
    if schedule.enabled:
        _apply_stop_rules(schedule, now, model)
    return outcome


def _apply_usage(schedule: WarmingSchedule, usage: Usage, model: str, now) -> None:
    total_input = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    hit = usage.cache_read_tokens > 0
    previous = max(filter(None, [schedule.last_warm_at, schedule.last_turn_at]), default=None)
    first_since_enabled = schedule.enabled_at is not None and (
        schedule.last_warm_at is None or schedule.last_warm_at < schedule.enabled_at
    )
    within_ttl = previous is not None and (now - previous).total_seconds() <= settings.MOTHERSHIP_PROMPT_CACHE_TTL
    if hit:
        schedule.hit_count += 1
        schedule.consecutive_misses = 0
    else:
        schedule.miss_count += 1
        # A miss counts against the provider only when the cache should still have been alive,
        # and never on the first warm after enabling (that one may rebuild the cache).
        if within_ttl and not first_since_enabled:
            schedule.consecutive_misses += 1
        else:
            schedule.consecutive_misses = 0
    schedule.warm_count += 1
    schedule.consecutive_failures = 0
    schedule.last_error = ""
    schedule.last_warm_at = now
    schedule.last_cache_pct = 100.0 * usage.cache_read_tokens / total_input if total_input else 0.0
    schedule.prefix_tokens = total_input
    schedule.last_warm_cost = usage_cost(usage, model)
    # not_worth_it weighs keep-alive spend (warms that read the cache) against one rebuild; a
    # warm that missed *was* a rebuild, and repeated misses are the cache_miss rule's business.
    if hit:
        schedule.idle_warm_cost += schedule.last_warm_cost


def _apply_stop_rules(schedule: WarmingSchedule, now, model: str) -> None:
    reason = ""
    idle_since = max(filter(None, [schedule.last_turn_at, schedule.enabled_at]), default=None)
    if schedule.consecutive_failures >= settings.MOTHERSHIP_WARMING_MAX_FAILURES:
        reason = "failures"
    elif schedule.consecutive_misses >= 2:
        reason = "cache_miss"
    elif schedule.prefix_tokens and schedule.idle_warm_cost > rebuild_cost(schedule.prefix_tokens, model):
        reason = "not_worth_it"
    elif idle_since is not None and (now - idle_since).total_seconds() >= settings.MOTHERSHIP_WARMING_IDLE_LIMIT:
        reason = "idle_limit"
    if reason:
        _stop(schedule, reason)


def _stop(schedule: WarmingSchedule, reason: str) -> None:
    schedule.enabled = False
    schedule.stop_reason = reason
    schedule.next_warm_at = None
    logger.info("warming of chat %s stopped: %s", schedule.chat_id, reason)


# --- turns ---------------------------------------------------------------------------------


def warming_on_turn_sealed(*, chat_id, sealed_at) -> None:
    """A turn sealed: the idle clock restarts and the next warm is ``sealed_at + interval``."""
    with transaction.atomic():
        schedule = WarmingSchedule.objects.select_for_update().filter(chat_id=chat_id).first()
        if schedule is None:
            return
        schedule.last_turn_at = sealed_at
        schedule.idle_warm_cost = 0.0
        schedule.claim_token, schedule.claimed_at = "", None  # a warm claimed before the turn is void
        if schedule.enabled:
            schedule.next_warm_at = sealed_at + datetime.timedelta(seconds=schedule.interval_seconds)
        schedule.save()
        if schedule.enabled:
            transaction.on_commit(lambda: warming_push(chat_id=chat_id))
