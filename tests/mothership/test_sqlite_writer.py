"""SQLite's writers take turns on one writer lock (threads of a process, and processes) instead of polling."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from mothership.infra.sqlite3.base import WriterLock, _is_write


def test_a_second_writer_waits_for_the_first_and_goes_as_soon_as_it_is_done(tmp_path):
    path = str(tmp_path / "db.writelock")
    first, second = WriterLock(path, timeout=5), WriterLock(path, timeout=5)
    first.acquire()
    took = {}
    waiter = threading.Thread(target=lambda: (second.acquire(), took.setdefault("at", time.monotonic())))
    waiter.start()
    time.sleep(0.2)
    assert "at" not in took  # still waiting
    released = time.monotonic()
    first.release()
    waiter.join(5)
    assert took["at"] - released < 0.05  # woken at once, not on a poll
    second.release()


def test_a_writer_in_another_process_holds_it_off_and_a_bounded_wait_says_database_is_locked(tmp_path):
    path = str(tmp_path / "db.writelock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl, os, time; fd = os.open({path!r}, os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(1.0)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        WriterLock(path, timeout=0.2).acquire()
    lock = WriterLock(path, timeout=5)
    lock.acquire()  # once the other process is done
    assert holder.wait(5) == 0
    lock.close()


@pytest.mark.parametrize(
    ("query", "write"),
    [("INSERT INTO t VALUES (1)", True), ("  update t set a = 1", True), ("SELECT 1", False), ("", False), ("PRAGMA x", False)],
)
def test_which_statements_are_writes(query, write):
    assert _is_write(query) is write


@pytest.mark.django_db
def test_debug_keeps_no_log_of_statements_but_a_capture_still_counts_them(settings):
    """DEBUG (as `make run` sets it) would log every statement in memory, and on SQLite run a second
    one per query to quote its parameters; nothing reads that log, so it is off. The tests'
    query counts (``CaptureQueriesContext``) still see every statement."""
    from django.contrib.auth import get_user_model
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend's own setting")
    settings.DEBUG = True
    reset_queries()
    get_user_model().objects.filter(username="nobody").exists()
    assert connection.queries == []
    with CaptureQueriesContext(connection) as captured:
        get_user_model().objects.filter(username="nobody").exists()
    assert len(captured) == 1 and "nobody" in captured[0]["sql"]
