"""Server-side warming: the beat-ticked dispatcher, the warm itself, its stats and stop rules.

The dispatcher claims due schedules with ``SELECT … FOR UPDATE SKIP LOCKED`` in batches and
stamps each claimed row with a claim token; one Celery message carries a whole batch. A warm
records its result only if its claim token is still the row's, so two dispatchers (or a
re-claim after a lost message) never warm a conversation twice, and a warm that lands after a
close or a turn changes nothing. The row is never locked while the model is called.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chats.selectors import conversation_prefix
from streams import locks
from streams.providers import ProviderError, Usage, get_provider
from warming.models import WarmingSchedule
from warming.services import warming_push

logger = logging.getLogger(__name__)

# A claim older than this is presumed lost (its message expired, its worker died) and the row
# is due again.
CLAIM_LEASE = datetime.timedelta(seconds=60)


# --- prices and stop rules ----------------------------------------------------------------


def prices(model: str) -> dict[str, float]:
    """USD per million tokens for ``model`` (``MOTHERSHIP_PRICES``; ``default`` when unlisted)."""
    table = settings.MOTHERSHIP_PRICES
    return table.get(model) or table["default"]


def usage_cost(usage: Usage, model: str) -> float:
    p = prices(model)
    return (
        usage.input_tokens * p["input"]
        + usage.cache_read_tokens * p["cache_read"]
        + usage.cache_write_tokens * p["cache_write"]
        + usage.output_tokens * p["output"]
    ) / 1_000_000


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
    """Warm one conversation's prefix, then record, reschedule, apply the stop rules and push."""
    schedule = WarmingSchedule.objects.filter(chat_id=chat_id, claim_token=token).first()
    if schedule is None:
        return WarmResult(str(chat_id), "superseded")
    if locks.lock_owner(chat_id=chat_id) is not None:
        # No warm while a turn streams; its seal reschedules (sealed_at + interval).
        WarmingSchedule.objects.filter(chat_id=chat_id, claim_token=token).update(claim_token="", claimed_at=None)
        return WarmResult(str(chat_id), "skipped_streaming")
    messages = conversation_prefix(chat_id=chat_id)
    if not messages:  # nothing to cache yet: rescheduled, and the model is not called
        return WarmResult(str(chat_id), _record(chat_id, token, usage=None, error="", model="", empty=True))
    provider = get_provider()
    try:
        usage = provider.warm(messages=messages)
        error = ""
    except ProviderError as exc:
        usage, error = None, exc.reason or "provider error"
    except Exception as exc:  # a warm never takes the worker down; the failure is visible instead
        logger.exception("warm of chat %s failed", chat_id)
        usage, error = None, f"{type(exc).__name__}: {exc}"[:500]
    outcome = _record(chat_id, token, usage=usage, error=error, model=provider.model)
    return WarmResult(str(chat_id), outcome)


def _record(chat_id, token: str, *, usage: Usage | None, error: str, model: str, empty: bool = False) -> str:
    now = timezone.now()
    with transaction.atomic():
        schedule = WarmingSchedule.objects.select_for_update().filter(chat_id=chat_id, claim_token=token).first()
        if schedule is None:  # closed, disabled, re-claimed or rescheduled by a turn meanwhile
            return "superseded"
        schedule.claim_token, schedule.claimed_at = "", None
        if empty:
            schedule.next_warm_at = now + datetime.timedelta(seconds=schedule.interval_seconds) if schedule.enabled else None
            schedule.save()
            transaction.on_commit(lambda: warming_push(chat_id=chat_id))
            return "empty"
        if usage is None:
            schedule.consecutive_failures += 1
            schedule.last_error = error
            outcome = "failed"
        else:
            _apply_usage(schedule, usage, model, now)
            outcome = "warmed"
        # The future next warm, saved before the update is pushed (CR-4b). A one-off warm of a
        # disabled schedule (warm-now) schedules nothing.
        schedule.next_warm_at = now + datetime.timedelta(seconds=schedule.interval_seconds) if schedule.enabled else None
        if schedule.enabled:
            _apply_stop_rules(schedule, now, model)
        schedule.save()
        transaction.on_commit(lambda: warming_push(chat_id=chat_id))  # saved first, then pushed (CR-4b)
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
