"""Shared by every app's admin actions: say what an action did, per outcome."""

from __future__ import annotations

from django.contrib import messages


def report(modeladmin, request, counts: dict[str, int], what: str) -> None:
    """'3 cancelled, 1 already finished' — what an action did, per outcome."""
    parts = [f"{n} {outcome}" for outcome, n in counts.items() if n]
    modeladmin.message_user(request, f"{what}: " + (", ".join(parts) or "nothing to do"), messages.INFO)


def tally(counts: dict[str, int], outcome: str) -> None:
    counts[outcome] = counts.get(outcome, 0) + 1
