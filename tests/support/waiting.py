"""Waiting on real processes: poll until a condition holds, or fail saying what never happened."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, what: str, *, every: float = 0.05):
    """The predicate's first truthy value within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
