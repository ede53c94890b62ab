"""Every write to warming schedules."""

from __future__ import annotations

from warming.models import WarmingSchedule


def warming_disable(*, chat, reason: str) -> bool:
    """Turn warming off for ``chat`` with a visible stop reason. True if it was on.

    Guarded by ``enabled=True`` in the UPDATE itself, so two closes (or a close racing the
    dispatcher) disable it once and report it once.
    """
    return bool(
        WarmingSchedule.objects.filter(chat_id=chat.pk, enabled=True).update(enabled=False, stop_reason=reason, next_warm_at=None)
    )
