"""`make run`'s supervisor on embedded defaults: several web and worker processes on one port,
restarts a killed worker or web process, stops everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest
import redis

from tests.support.processes import ROOT, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _started(text: str, name: str) -> list[int]:
    return [int(p) for p in re.findall(rf"{name} \| started \(pid (\d+)\)", text)]


def _forwarded_allow_ips(pid: int) -> str:
    """The proxies a web process' uvicorn believes (MOTHERSHIP_TRUSTED_PROXIES)."""
    argv = psutil.Process(pid).cmdline()
    return argv[argv.index("--forwarded-allow-ips") + 1]


def test_runall_on_embedded_defaults_serves_restarts_a_killed_worker_and_stops_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MOTHERSHIP_EMBEDDED_REDIS"}}
    env.update(
        MOTHERSHIP_SQLITE_PATH=str(tmp_path / "app.sqlite3"),
        PYTHONUNBUFFERED="1",
        MOTHERSHIP_WORKER_CONCURRENCY="2",
        WEB_CONCURRENCY="2",
        MOTHERSHIP_WORKER_PROCESSES="2",
        MOTHERSHIP_TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8",
        MOTHERSHIP_HANG_SECONDS="2",
    )
    port = free_port()
    log = tmp_path / "runall.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runall", "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        text = lambda: log.read_text(errors="replace")  # noqa: E731
        wait_for(lambda: "Mothership on" in text(), 60, "the start banner")
        assert "login: demo / demo" in text()
        redis_pid = int(re.search(r"embedded, pid (\d+)", text()).group(1))

        def healthy(timeout: float = 1):
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=timeout).json()["ok"]
            except (httpx.HTTPError, ValueError):
                return False

        wait_for(healthy, 60, "/healthz")
        token = httpx.post(f"http://127.0.0.1:{port}/api/auth/token", json={"username": "demo", "password": "demo"}).json()[
            "token"
        ]
        chats = httpx.get(f"http://127.0.0.1:{port}/api/mothership/chats", headers={"Authorization": f"Token {token}"}).json()
        assert len(chats) >= 3

        assert "processes: 2 web, 2 worker (2 turns each), 1 background worker (16 tasks each), 1 beat" in text()
        assert len(_started(text(), "web-1")) == len(_started(text(), "web-2")) == 1
        # Each web process is one process: none forks workers of its own (uvicorn reads WEB_CONCURRENCY
        # too), which would make N² of them and outlive a killed one.
        for name in ("web-1", "web-2"):
            assert psutil.Process(_started(text(), name)[-1]).children(recursive=True) == []
            assert _forwarded_allow_ips(_started(text(), name)[-1]) == "127.0.0.1,10.0.0.0/8"
        assert len(_started(text(), "worker-1")) == len(_started(text(), "worker-2")) == len(_started(text(), "background")) == 1
        wait_for(lambda: text().count("ready.") >= 3, 60, "both turn workers and the background worker")

        # A turn runs end to end on the turn workers.
        headers = {"Authorization": f"Token {token}"}
        chat_id = chats[0]["id"]
        sent = httpx.post(
            f"http://127.0.0.1:{port}/api/mothership/chats/{chat_id}/messages", json={"content": "hi"}, headers=headers
        )
        assert sent.status_code == 201, sent.text

        def finished():
            detail = httpx.get(f"http://127.0.0.1:{port}/api/mothership/chats/{chat_id}", headers=headers).json()
            return detail["state"] == "idle" and detail["messages"][-1]["status"] == "complete"

        wait_for(finished, 60, "the turn to complete")

        # The embedded Redis dies (kill -9): it is started again on its port with its data, and
        # the app carries on. The finished turn's log survives (append-only, fsync every second).
        log_key = f"mothership:stream:{sent.json()['stream_id']}:events"
        redis_url = re.search(r"redis: (redis://\S+)", text()).group(1)
        assert redis.Redis.from_url(redis_url).exists(log_key)
        time.sleep(1.5)  # past the next fsync
        os.kill(redis_pid, signal.SIGKILL)
        wait_for(lambda: "redis | exited; restarted" in text(), 30, "the embedded Redis restart")
        redis_pid = int(re.search(r"redis \| exited; restarted \(pid (\d+)\)", text()).group(1))
        assert redis.Redis.from_url(redis_url).xlen(log_key) > 2
        wait_for(healthy, 30, "/healthz after the Redis restart")
        again = httpx.post(
            f"http://127.0.0.1:{port}/api/mothership/chats/{chat_id}/messages", json={"content": "hi"}, headers=headers
        )
        assert again.status_code == 201, again.text
        wait_for(finished, 60, "a turn after the Redis restart")

        os.kill(_started(text(), "worker-1")[-1], signal.SIGKILL)
        wait_for(lambda: len(_started(text(), "worker-1")) == 2, 30, "the worker restart")
        assert healthy()  # the web processes kept serving

        # A killed web process is restarted; the other one answers meanwhile (same port).
        killed = _started(text(), "web-2")[-1]
        os.kill(killed, signal.SIGKILL)
        # What was on its way to it goes with it; from its end on, the other one takes every connection.
        wait_for(lambda: "web-2 | exited with status" in text(), 5, "the supervisor to see web-2 gone")
        # (3 s each: the restarted worker and web process load both cores meanwhile; a connection
        # lost in the dead process's backlog would never be answered at all)
        assert all(healthy(timeout=3) for _ in range(20))
        wait_for(lambda: len(_started(text(), "web-2")) == 2, 30, "the web restart")
        wait_for(lambda: text().count("Uvicorn running") >= 3, 30, "the restarted web process")
        assert _forwarded_allow_ips(_started(text(), "web-2")[-1]) == "127.0.0.1,10.0.0.0/8"  # its replacement too
        # (3 s each: the restarted worker and web process load both cores meanwhile; a connection
        # lost in the dead process's backlog would never be answered at all)
        assert all(healthy(timeout=3) for _ in range(20))

        # A hung web process (stopped: its event loop beats no more) is noticed, its socket closed
        # so new connections go to the other one, killed and started again; likewise a hung worker.
        for name, ready in (("web-1", "Uvicorn running"), ("worker-2", "ready.")):
            hung, readies = _started(text(), name)[-1], text().count(ready)
            os.kill(hung, signal.SIGSTOP)
            stopped_at = time.monotonic()
            wait_for(lambda name=name: f"{name} | not answering" in text(), 10, f"the supervisor to see {name} hung")
            noticed = time.monotonic() - stopped_at
            print(f"{name} hung: noticed {noticed:.2f} s after the stop")
            assert 1 <= noticed < 5, noticed  # 2 s after its last beat (one a second), at a half-second check
            if name == "web-1":
                assert all(healthy(timeout=3) for _ in range(20))  # web-2 answers every one meanwhile
            wait_for(lambda name=name: len(_started(text(), name)) >= 2, 30, f"the restart of {name}")
            wait_for(lambda ready=ready, readies=readies: text().count(ready) > readies, 60, f"{name} up again")
            assert not _alive(hung)

        children = [int(p) for p in re.findall(r"\| started \(pid (\d+)\)", text())]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "all stopped" in text()
        # Every line says when: the supervisor's own and each child's.
        untimed = [line for line in text().splitlines() if line and not re.match(r"\d\d:\d\d:\d\d\.\d{3} ", line)]
        assert not untimed, untimed[:5]
        assert "Traceback" not in text()  # a Redis restart, a killed or hung child: one line each
        wait_for(lambda: not _alive(redis_pid), 5, "embedded redis to stop")
        assert not any(_alive(pid) for pid in children)
    finally:
        if proc.poll() is None:
            proc.kill()
