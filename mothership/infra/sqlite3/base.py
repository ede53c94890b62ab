"""Django's SQLite backend with writers that queue instead of polling.

SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps in
steps of up to 100 ms and wakes in no order. Under a burst (100 turns started at once, web and
worker writing together) a write then waits seconds. Here every write transaction, and every
write outside one, first takes this database's writer lock: a ``threading.Lock`` shared by
the process's connections (so one thread per process competes) and an ``flock`` on
``<database>.writelock`` between processes (so web, workers and beat take turns).
``BEGIN IMMEDIATE`` then finds SQLite free. A writer that cannot get the lock within the
connection's ``timeout`` fails with "database is locked", as SQLite itself would.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

from django.db.backends.sqlite3 import base

_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "WITH"})


def _is_write(query: str) -> bool:
    words = query.lstrip()[:7].split(None, 1)
    return bool(words) and words[0].upper() in _WRITES


_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


class WriterLock:
    """One connection's hold on the database's writer lock (process lock, then file lock)."""

    def __init__(self, path: str, timeout: float):
        self.path, self.timeout = path, timeout
        with _process_locks_guard:
            self.process_lock = _process_locks.setdefault(path, threading.Lock())
        self.fd: int | None = None
        self.held = False

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        if not self.process_lock.acquire(timeout=self.timeout):
            raise base.Database.OperationalError("database is locked")
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            delay = 0.0005
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    # Only one thread per process polls here, so a short poll costs nothing.
                    if time.monotonic() >= deadline:
                        raise base.Database.OperationalError("database is locked") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.004)
        except BaseException:
            self.process_lock.release()
            raise
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                self.process_lock.release()

    def close(self) -> None:
        self.release()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class CursorWrapper(base.SQLiteCursorWrapper):
    writer: WriterLock | None = None

    def execute(self, query, params=None):
        writer = self.writer
        if writer is None or writer.held or not _is_write(query):
            return super().execute(query, params)
        writer.acquire()  # a write in autocommit mode: its own short turn
        try:
            return super().execute(query, params)
        finally:
            writer.release()

    def executemany(self, query, param_list):
        writer = self.writer
        if writer is None or writer.held:
            return super().executemany(query, param_list)
        writer.acquire()
        try:
            return super().executemany(query, param_list)
        finally:
            writer.release()


class DatabaseWrapper(base.DatabaseWrapper):
    writer: WriterLock | None = None

    @property
    def queries_logged(self) -> bool:
        """Only when asked (the tests' ``CaptureQueriesContext``), never for DEBUG: its log of every
        statement is read by nothing here (the settings keep SQL out of the logs), and on SQLite it
        costs a second statement per query (Django quotes the parameters with ``SELECT QUOTE(?)``)."""
        return self.force_debug_cursor

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        if not self.is_in_memory_db():
            self.writer = WriterLock(f"{self.settings_dict['NAME']}.writelock", float(conn_params.get("timeout", 5)))
        return connection

    def create_cursor(self, name=None):
        cursor = self.connection.cursor(factory=CursorWrapper)
        cursor.writer = self.writer
        return cursor

    def _start_transaction_under_autocommit(self):
        if self.writer is None:
            return super()._start_transaction_under_autocommit()
        self.writer.acquire()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self.writer.release()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            if self.writer is not None:
                self.writer.release()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            if self.writer is not None:
                self.writer.release()

    def _close(self):
        try:
            return super()._close()
        finally:
            if self.writer is not None:
                self.writer.close()
