"""Ids from the outside world: parsed strictly, never trusted."""

from __future__ import annotations

import uuid


def parse_uuid(value) -> uuid.UUID | None:
    """The UUID ``value`` spells, or None (never an exception: callers answer 400 or 404)."""
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None
