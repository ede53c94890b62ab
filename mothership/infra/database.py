"""Riding out a database that is away for a moment (restarting, failing over, out of connections)."""

from __future__ import annotations

import logging
import time

from django.db import InterfaceError, OperationalError, connection, connections

from mothership.infra import metrics

logger = logging.getLogger(__name__)

# What a database that is restarting, unreachable or out of connections raises.
UNAVAILABLE = (OperationalError, InterfaceError)


def retrying_database(call, *, for_seconds: float, what: str, on_failure=None):
    """``call()``, retried with back-off (0.1 s doubling to 2 s) while the database is unavailable,
    for at most ``for_seconds``; then its error is raised. ``on_failure()`` runs after each failed
    attempt (a worker keeps its turn's lock alive there). Outside a transaction only: a broken
    connection is closed, never reused."""
    delay, deadline, failures = 0.1, time.monotonic() + for_seconds, 0
    while True:
        try:
            result = call()
        except UNAVAILABLE as exc:
            metrics.failed_attempt(metrics.DATABASE_ERRORS, call)
            if time.monotonic() >= deadline:
                raise
            if not failures:
                logger.warning("database unavailable during %s (%s); retrying for up to %.0f s", what, exc, for_seconds)
            failures += 1
            connection.close()
            if on_failure is not None:
                on_failure()
            time.sleep(delay)
            delay = min(2.0, delay * 2)
            continue
        if failures:
            logger.warning("database back for %s after %d failed attempts", what, failures)
        return result


def connection_release() -> None:
    """Give this thread's database connection back while it waits a long time (a turn's model):
    to the pool on PostgreSQL, so connections never grow with the turns in flight. A persistent
    connection (SQLite's: a file handle, ``CONN_MAX_AGE = None``) is kept; so is one inside a
    transaction (a test's keeps its connection)."""
    conn = connections["default"]
    if conn.settings_dict.get("CONN_MAX_AGE") is None or conn.in_atomic_block:
        return
    conn.close()
