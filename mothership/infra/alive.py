"""Process heartbeats: a file each web and worker process touches every second, from the loop
that does its work, so a supervisor can tell a hung process (stopped, deadlocked, its event loop
blocked) from a busy one.

The supervisor (``runall``, or a production one: docs/deploy.md) names the file in
``MOTHERSHIP_HEARTBEAT_FILE``; without it nothing is written. The web process beats from its
event loop (the ASGI lifespan, ``mothership.asgi``): a beat means the loop that serves every
socket runs. A Celery worker or beat beats from a thread of its own (``mothership.celery``),
started before it connects to the broker: its event loop stops while Redis is away, and a
worker riding out a Redis outage (its turns keep their text) must not be taken for hung.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

ENV = "MOTHERSHIP_HEARTBEAT_FILE"
PERIOD = 1.0  # seconds between beats


def heartbeat_file() -> Path | None:
    name = os.environ.get(ENV)
    return Path(name) if name else None


def beat(path: Path) -> None:
    """One beat: the file's modification time is now."""
    try:
        path.touch()
    except OSError as exc:  # a full or read-only disk must not stop the process; the supervisor sees it
        logger.warning("heartbeat file %s not written: %s", path, exc)


def age(path: Path) -> float | None:
    """Seconds since the last beat, or None if there was none yet."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


async def beat_forever(path: Path) -> None:
    """The web process's beats, from its event loop: a blocked loop stops them."""
    while True:
        beat(path)
        await asyncio.sleep(PERIOD)


class Lifespan:
    """An ASGI app's lifespan with the heartbeat: started at startup, stopped at shutdown; every
    other scope goes to ``app``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        task = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                path = heartbeat_file()
                if path is not None:
                    task = asyncio.get_running_loop().create_task(beat_forever(path))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await send({"type": "lifespan.shutdown.complete"})
                return


def beat_from_thread() -> threading.Thread | None:
    """A Celery process's beats, from a daemon thread; None when no file is named."""
    path = heartbeat_file()
    if path is None:
        return None

    def run():
        while True:
            beat(path)
            time.sleep(PERIOD)

    thread = threading.Thread(target=run, name="heartbeat-file", daemon=True)
    thread.start()
    return thread
