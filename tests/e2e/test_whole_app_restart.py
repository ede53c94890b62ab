"""The whole app killed (``kill -9`` of every process: supervisor, web, workers, beat and the embedded
Redis with its append-only file) in the middle of several replies, and started again: the restored
locks still name the killed workers, and each turn is sealed ``interrupted / worker_lost`` with its
text as soon as a worker of the new start is up, not when its lock expires (a lock TTL later)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import httpx
import psutil
import pytest

from tests.support.processes import ROOT, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TURNS = 6
TRUTHFUL_WITHIN = 10.0  # seconds after the restarted app answers


def _runall(env: dict, port: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runall", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _kill_tree(proc: subprocess.Popen) -> None:
    """kill -9 of the supervisor and everything it started, all at once (no child sees its parent go first)."""
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for process in tree:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=10)
    proc.wait(timeout=10)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)


def _streams(db_path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(db_path) as db:
        return {str(uuid.UUID(row[0])): (row[1], row[2]) for row in db.execute("SELECT id, status, reason FROM streams_stream")}


def test_after_the_whole_app_is_killed_and_started_again_every_turn_is_truthful_within_seconds(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MOTHERSHIP_EMBEDDED_REDIS"}}
    env.update(
        MOTHERSHIP_SQLITE_PATH=str(tmp_path / "app.sqlite3"),
        PYTHONUNBUFFERED="1",
        WEB_CONCURRENCY="1",
        MOTHERSHIP_WORKER_PROCESSES="2",
        MOTHERSHIP_WORKER_CONCURRENCY=str(TURNS),
        MOTHERSHIP_STREAM_LOCK_TTL="60",  # the default: the old behaviour waited this long
        MOTHERSHIP_STREAM_HEARTBEAT="20",
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND="20",
        MOTHERSHIP_LOCAL_REPLY_TOKENS="4000",  # minutes of reply: in flight when the app dies
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "runall.log"
    log = open(log_path, "w")
    text = lambda: log_path.read_text(errors="replace")  # noqa: E731

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).json()["ok"]
        except (httpx.HTTPError, ValueError):
            return False

    proc = _runall(env, port, log)
    try:
        wait_for(healthy, 90, "/healthz")
        wait_for(lambda: text().count("ready.") >= 3, 60, "both turn workers and the background worker")
        token = httpx.post(f"{base}/api/auth/token", json={"username": "demo", "password": "demo"}).json()["token"]
        headers = {"Authorization": f"Token {token}"}
        workspace = httpx.get(f"{base}/api/mothership/workspaces", headers=headers).json()[0]["id"]
        chats = []
        for i in range(TURNS):
            chat = httpx.post(
                f"{base}/api/mothership/chats", json={"workspace": workspace, "title": f"restart {i}"}, headers=headers
            ).json()
            sent = httpx.post(f"{base}/api/mothership/chats/{chat['id']}/messages", json={"content": "go on"}, headers=headers)
            assert sent.status_code == 201, sent.text
            chats.append((chat["id"], sent.json()["stream_id"]))

        def detail(chat_id: str) -> dict:
            return httpx.get(f"{base}/api/mothership/chats/{chat_id}", headers=headers, timeout=5).json()

        def all_streaming_with_text() -> bool:
            return all((d := detail(c))["state"] == "streaming" and (d["stream"] or {}).get("text") for c, _ in chats)

        wait_for(all_streaming_with_text, 60, "every turn streaming its reply", every=0.2)
        time.sleep(1.5)  # past the append-only file's next fsync: Redis comes back with these locks

        # The whole app dies at once.
        _kill_tree(proc)
        assert {s for s, _ in _streams(tmp_path / "app.sqlite3").values()} == {"streaming"}

        # Started again, on the same files.
        log.write("\n--- restart ---\n")
        log.flush()
        restarted_at = time.monotonic()
        proc = _runall(env, port, log)
        wait_for(healthy, 90, "/healthz after the restart", every=0.1)
        up_at = time.monotonic()

        def truthful() -> bool:
            listed = httpx.get(f"{base}/api/mothership/chats", headers=headers, timeout=5).json()
            states = {c["id"]: c["state"] for c in listed}
            return all(states[c] != "streaming" for c, _ in chats)

        wait_for(truthful, 75, "every tile no longer streaming", every=0.1)
        truthful_at = time.monotonic()
        figure = truthful_at - up_at
        print(
            f"every tile truthful {figure:.1f} s after the restarted app answered "
            f"({truthful_at - restarted_at:.1f} s after the restart began; lock TTL 60 s)"
        )

        streams = _streams(tmp_path / "app.sqlite3")
        assert {streams[s] for _, s in chats} == {("interrupted", "worker_lost")}, text()[-4000:]
        for chat_id, _ in chats:
            body = detail(chat_id)
            assert body["state"] == "interrupted" and body["active_stream_id"] is None
            assert body["messages"][-1]["status"] == "interrupted" and body["messages"][-1]["content"]  # its text kept
        assert figure <= TRUTHFUL_WITHIN, text()[-4000:]
    finally:
        _stop(proc)
        log.close()
