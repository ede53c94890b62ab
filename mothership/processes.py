"""The app's processes, as command lines: one place for ``runall``, the tests and the benchmarks.

- web: uvicorn (uvloop, httptools, its sans-I/O ``websockets`` protocol with a bound on each
  socket's unread output (``mothership.infra.wsprotocol``), without per-message deflate,
  which costs more CPU than it saves on frames of a few dozen bytes), on a socket given by
  file descriptor (``runall``) or on a host and port;
- worker: Celery with a thread pool (a turn mostly waits on the model), on the turn queue or
  the background queue (or both, as the tests run them);
- beat: Celery beat, exactly one per deployment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

# uvicorn's --ws-max-size: a larger WebSocket frame is never read into memory, the socket is
# closed with 1009. Frames up to this size but past the app's MAX_FRAME_BYTES (64 KiB) get an
# error frame instead (mothership.infra.socket).
WS_MAX_BYTES = 1024 * 1024


def cores() -> int:
    """The cores this process may run on (the default number of web and worker processes)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def web_argv(
    *,
    fd: int | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    access_log: bool = False,
    trusted_proxies: Sequence[str] = (),
) -> list[str]:
    """``trusted_proxies``: ``MOTHERSHIP_TRUSTED_PROXIES``, the only peers whose X-Forwarded-For and
    X-Forwarded-Proto uvicorn believes (none by default: uvicorn's own default is 127.0.0.1)."""
    where = ["--fd", str(fd)] if fd is not None else ["--host", host, "--port", str(port)]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "mothership.asgi:application",
        *where,
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--ws",
        "mothership.infra.wsprotocol:BoundedWebSocketProtocol",
        "--ws-per-message-deflate",
        "false",
        "--ws-max-size",
        str(WS_MAX_BYTES),
        # One process each: uvicorn would otherwise read WEB_CONCURRENCY too and fork that many
        # workers per web process (N² in all), which a killed web process leaves behind.
        "--workers",
        "1",
        # An empty list trusts nobody, and the flag overrides uvicorn's FORWARDED_ALLOW_IPS too.
        "--forwarded-allow-ips",
        ",".join(trusted_proxies),
        *([] if access_log else ["--no-access-log"]),
    ]


def worker_argv(*, concurrency: int, name: str, queues: list[str], heartbeat: bool = True) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "mothership",
        "worker",
        "-P",
        "threads",
        "-c",
        str(concurrency),
        "-l",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "-Q",
        ",".join(queues),
        *([] if heartbeat else ["--without-heartbeat"]),
        "-n",
        name,
    ]


def beat_argv(*, schedule: Path) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "mothership", "beat", "-l", "INFO", "--schedule", str(schedule)]
