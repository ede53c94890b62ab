"""Every read and write of warming schedules, and the ``cache-warming`` surface's fields.

A schedule is created lazily on the first write and is off by default: nothing is scheduled
until the user opts in. Every change is saved first and pushed to the conversation's
subscribers only after commit, so a pushed ``nextWarmAt`` is always the stored, future one.
"""

from __future__ import annotations

import datetime
import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mothership.infra import groups
from mothership.infra.signals import send_logged
from streams.providers import model_for
from warming.models import WarmingSchedule
from warming.signals import warming_changed

logger = logging.getLogger(__name__)

SURFACE_ID = "cache-warming"
UPDATE_MESSAGE_TYPE = "warming.update"  # channel-layer type; the consumer's ``warming_update`` handler


class WarmingInputError(ValueError):
    """Bad input from a client: answered with 400 / an error frame, never applied."""


def validate_interval(value) -> int:
    low, high = settings.MOTHERSHIP_WARMING_MIN_INTERVAL, settings.MOTHERSHIP_WARMING_MAX_INTERVAL
    if isinstance(value, bool) or not isinstance(value, int):
        raise WarmingInputError(f"interval_seconds must be a whole number of seconds between {low} and {high}.")
    if not low <= value <= high:
        raise WarmingInputError(f"interval_seconds must be between {low} and {high} seconds; got {value}.")
    return value


def validate_enabled(value) -> bool:
    if not isinstance(value, bool):
        raise WarmingInputError("enabled must be true or false.")
    return value


def warming_get(*, chat) -> WarmingSchedule:
    """The chat's schedule, or an unsaved default one (off) when it has none yet."""
    return WarmingSchedule.objects.filter(chat_id=chat.pk).first() or WarmingSchedule(chat_id=chat.pk)


def warming_update(
    *, chat, enabled: bool | None = None, interval_seconds: int | None = None, flip: bool = False
) -> WarmingSchedule:
    """Apply an explicit change (or the legacy ``toggle`` flip) and push it after commit.

    Enabling schedules the first warm one interval from now and clears the stop reason;
    disabling unschedules; a new interval while enabled reschedules from now.
    """
    if interval_seconds is not None:
        validate_interval(interval_seconds)
    if enabled is not None:
        validate_enabled(enabled)
    with transaction.atomic():
        WarmingSchedule.objects.get_or_create(chat_id=chat.pk)
        schedule = WarmingSchedule.objects.select_for_update().get(chat_id=chat.pk)
        if flip:
            enabled = not schedule.enabled
        if enabled is True and not schedule.enabled and not model_for(getattr(chat, "model_id", "")).prompt_cache:
            raise WarmingInputError(
                "This chat's model keeps no prompt cache (prompt_cache is off in its LLM_MODELS entry): warming would only spend."
            )
        now = timezone.now()
        if interval_seconds is not None:
            schedule.interval_seconds = interval_seconds
        if enabled is True and not schedule.enabled:
            schedule.enabled = True
            schedule.stop_reason = ""
            schedule.last_error = ""
            schedule.consecutive_failures = 0
            schedule.consecutive_misses = 0
            schedule.idle_warm_cost = 0.0  # the keep-alive vs rebuild comparison restarts
            schedule.enabled_at = now
        elif enabled is False:
            if schedule.enabled:
                schedule.claim_token, schedule.claimed_at = "", None  # a warm in flight records nothing
            schedule.enabled = False
            schedule.stop_reason = ""
        schedule.next_warm_at = now + datetime.timedelta(seconds=schedule.interval_seconds) if schedule.enabled else None
        schedule.save()
        transaction.on_commit(lambda: warming_push(chat_id=chat.pk))
    return schedule


def warming_disable(*, chat, reason: str) -> bool:
    """Turn warming off for ``chat`` with a visible stop reason. True if it was on.

    Guarded by ``enabled=True`` in the UPDATE itself, so two closes (or a close racing the
    dispatcher) disable it once and report it once.
    """
    with transaction.atomic():
        changed = bool(
            WarmingSchedule.objects.filter(chat_id=chat.pk, enabled=True).update(
                # A warm in flight (its claim voided) records nothing.
                enabled=False,
                stop_reason=reason,
                next_warm_at=None,
                claim_token="",
                claimed_at=None,
                updated_at=timezone.now(),
            )
        )
        if changed:
            transaction.on_commit(lambda: warming_push(chat_id=chat.pk))
    return changed


def _epoch_ms(value) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def warming_fields(schedule: WarmingSchedule) -> dict:
    """The surface's fields (HTTP answers the same). Percentages are 0–100, null before any warm."""
    retention = schedule.cache_retention
    return {
        "enabled": schedule.enabled,
        "interval_seconds": schedule.interval_seconds,
        "timer": {"nextWarmAt": _epoch_ms(schedule.next_warm_at), "lastWarmAt": _epoch_ms(schedule.last_warm_at)},
        "lastCachePct": None if schedule.last_cache_pct is None else round(schedule.last_cache_pct, 1),
        "cacheRetention": None if retention is None else round(retention * 100, 1),
        "warmCount": schedule.warm_count,
        "stopReason": schedule.stop_reason or None,
        "lastError": schedule.last_error or None,
        # Estimates from the price table (USD): the last warm, and an hour of warms at this interval.
        "lastWarmCost": None if schedule.last_warm_cost is None else round(schedule.last_warm_cost, 9),
        "costPerHour": None
        if schedule.last_warm_cost is None
        else round(schedule.last_warm_cost * 3600 / schedule.interval_seconds, 9),
    }


def warming_push(*, chat_id) -> None:
    """Push the stored state to every tab of the conversation, and tell the dashboards (its badge)."""
    warming_push_many(chat_ids=[chat_id])


def warming_push_many(*, chat_ids) -> None:
    """``warming_push`` for each conversation of a warm batch: one read, every publish in one pipeline.

    One read of the schedules (with their chats' workspaces) feeds both the tabs and the
    dashboards; best effort: a lost push is repaired by the next one, the state itself is saved.
    """
    ids = [uuid.UUID(str(chat_id)) for chat_id in chat_ids]
    schedules = {
        s.chat_id: s for s in WarmingSchedule.objects.filter(chat_id__in=ids).annotate(workspace_id=F("chat__workspace_id"))
    }
    try:
        with groups.batched():  # the surfaces' updates and the dashboards' badges, in one round trip
            for chat_id in ids:
                schedule = schedules.get(chat_id)
                fields = warming_fields(schedule or WarmingSchedule(chat_id=chat_id))
                update = {"type": UPDATE_MESSAGE_TYPE, "conversationId": str(chat_id), "fields": fields}
                groups.publish(groups.warming_group(chat_id), update)
                if schedule is not None:
                    send_logged(
                        warming_changed,
                        sender=WarmingSchedule,
                        chat_id=chat_id,
                        workspace_id=schedule.workspace_id,
                        fields=fields,
                    )
    except Exception:
        logger.exception("could not push the warming updates of %s", ", ".join(map(str, ids)))
