"""Shared by the benchmarks: Django set up from this checkout, and percentiles."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mothership.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")  # as `make run` and the tests run it
    # A benchmark's one user sends and warms far past the per-user limits.
    for name, value in (
        ("MOTHERSHIP_SEND_RATE", "100000/min"),
        ("MOTHERSHIP_WARMING_CHANGE_RATE", "100000/min"),
        ("MOTHERSHIP_WARM_NOW_RATE", "100000/min"),
        ("MOTHERSHIP_CHAT_CREATE_RATE", "100000/min"),
        ("MOTHERSHIP_MAX_CONCURRENT_TURNS", "100000"),
        ("MOTHERSHIP_WS_TOKEN_IN_URL", "1"),  # its clients connect with ?token=
    ):
        os.environ.setdefault(name, value)
    from mothership import embedded_redis

    embedded_redis.ensure_started(record=False)  # a benchmark owns its app, as the tests do
    import django

    django.setup()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]
