"""What a format's reader hands the importer: conversations as trees, checked, not yet written."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from chats.models import USAGE_FIELDS

# The latest epoch second a datetime holds (9999-12-31T23:59:59Z).
_LAST_EPOCH_SECOND = 253_402_300_799


class ImportRejected(ValueError):
    """A file the importer refuses, with a sentence saying what is wrong and where (400)."""


class ImportTooLarge(ImportRejected):
    """A file larger than MOTHERSHIP_IMPORT_MAX_BYTES (413)."""


@dataclass
class DraftMessage:
    key: str  # its id in the file
    parent_key: str | None  # the nearest ancestor that is imported too
    role: str
    content: str
    created_at: datetime.datetime | None = None
    tool_calls: list = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)


@dataclass
class DraftChat:
    title: str
    messages: list[DraftMessage]
    leaf_key: str | None = None
    system_prompt: str = ""
    model_id: str = ""
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None
    notes: list[str] = field(default_factory=list)


def missing(path: str) -> ImportRejected:
    return ImportRejected(f"{path}: missing.")


def epoch_time(value, path: str) -> datetime.datetime | None:
    """A time given as epoch seconds (a number or null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ImportRejected(f"{path}: not a time (epoch seconds, a number).")
    if not 0 <= value <= _LAST_EPOCH_SECOND:
        raise ImportRejected(f"{path}: not a time (epoch seconds between 1970 and 9999).")
    return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)


def check_acyclic(parents: dict[str, str | None], *, where: Callable[[str], str]) -> None:
    """Raise if following parents from any node comes back to it. ``parents`` holds only ids of
    the file (each parent already known to be one); ``where(key)`` names a node's parent field."""
    settled: set[str] = set()  # nodes whose ancestry reaches a root
    for start in parents:
        path: list[str] = []
        on_path: set[str] = set()
        at: str | None = start
        while at is not None and at not in settled:
            if at in on_path:
                raise ImportRejected(f"{where(at)}: a cycle ({at} is its own ancestor).")
            path.append(at)
            on_path.add(at)
            at = parents[at]
        settled.update(path)


def usage_counts(value, path: str) -> dict[str, int]:
    """A message's token counts (each a whole number ≥ 0; a missing one is 0)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportRejected(f"{path}: not an object.")
    counts = {}
    for name in USAGE_FIELDS:
        count = value.get(name, 0)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 2**31 - 1:
            raise ImportRejected(f"{path}.{name}: not a token count (a whole number ≥ 0).")
        counts[name] = count
    return counts
