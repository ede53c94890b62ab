"""``/readyz`` of a whole deployment of real processes (a web process, a turn worker, a background
worker and beat) on a Redis of its own: ready with everything up; then Redis frozen, beat stopped,
the turn worker stopped, the background worker stopped, each answered 503 naming it, within the
short timeout and the (shrunk) thresholds. On PostgreSQL the web process reaches the database
through a proxy the test cuts too."""

from __future__ import annotations

import signal
import time
import uuid

import dj_database_url
import httpx
import pytest
from django.conf import settings as django_settings

from tests.support import postgres, processes
from tests.support.redis_server import PrivateRedis
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

ALL_OK = {"db": "ok", "redis": "ok", "workers": "ok", "beat": "ok"}
TIMEOUT = 1.0  # MOTHERSHIP_READY_TIMEOUT
THRESHOLD = 1.5  # MOTHERSHIP_READY_WORKER_SECONDS and MOTHERSHIP_READY_BEAT_SECONDS
# Every process of the deployment: a Redis and a queue of their own, beats every 0.3 s.
SHRUNK = {
    "MOTHERSHIP_READY_HEARTBEAT": 0.3,
    "MOTHERSHIP_READY_WORKER_SECONDS": THRESHOLD,
    "MOTHERSHIP_READY_BEAT_SECONDS": THRESHOLD,
    "MOTHERSHIP_READY_TIMEOUT": TIMEOUT,
}


def _readyz(base: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = httpx.get(f"{base}/readyz", timeout=10)
    return response.status_code, response.json(), time.monotonic() - started


def test_readyz_names_a_frozen_redis_a_stopped_beat_and_stopped_workers(tmp_path):
    redis_server = PrivateRedis()
    env = dict(SHRUNK, REDIS_URL=redis_server.url, MOTHERSHIP_CELERY_QUEUE=f"ready-{uuid.uuid4().hex[:8]}")
    proxy = None
    web_env = dict(env)
    if postgres.on_postgres():
        db = django_settings.DATABASES["default"]
        proxy = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
        url = dj_database_url.parse(processes.database_url())
        web_env.update(
            DATABASE_URL=f"postgres://{url['USER']}@127.0.0.1:{proxy.port}/{url['NAME']}", MOTHERSHIP_DB_POOL_TIMEOUT=0.5
        )
    started = []
    try:
        web, base = processes.start_server(tmp_path, name="ready-web", **web_env)
        started.append(web)
        turns = processes.start_worker(tmp_path, name="ready-turns", queues="turns", concurrency=2, **env)
        started.append(turns)
        background = processes.start_worker(tmp_path, name="ready-background", queues="background", concurrency=2, **env)
        started.append(background)
        beat = processes.start_beat(tmp_path, **env)
        started.append(beat)

        # Everything up: ready
        wait_for(lambda: _readyz(base)[:2] == (200, ALL_OK), 30, "/readyz to answer 200 with every key ok", every=0.2)

        # Redis frozen (its process stopped: connections accepted, never answered): 503 within the timeout
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            status, body, took = _readyz(base)
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        print(f"Redis frozen: 503 in {took:.2f} s ({body['redis']})")
        assert status == 503 and took < TIMEOUT + 1.0, (status, body, took)
        assert body["redis"].startswith("unreachable: TimeoutError"), body
        assert body["db"] == "ok" and body["workers"] == body["beat"] == "unknown: Redis unreachable"
        wait_for(lambda: _readyz(base)[:2] == (200, ALL_OK), 15, "ready again once Redis answers", every=0.2)

        if proxy is not None:
            # The database cut off from the web process: 503 naming it, within the timeout
            proxy.cut()
            try:
                status, body, took = _readyz(base)
            finally:
                proxy.restore()
            print(f"database cut off: 503 in {took:.2f} s ({body['db']})")
            assert status == 503 and body["db"].startswith("unreachable: ") and took < TIMEOUT + 1.0, (body, took)
            assert body["redis"] == body["workers"] == body["beat"] == "ok"
            wait_for(lambda: _readyz(base)[:2] == (200, ALL_OK), 15, "ready again once the database answers", every=0.2)

        # Beat stopped: 503 naming beat's last tick once it is past the threshold; the workers stay ok
        stopped_at = time.monotonic()  # its last tick at most a heartbeat (0.3 s) before
        beat.stop()
        status, body, _ = wait_for(lambda: (r := _readyz(base))[0] == 503 and r, 10, "beat named", every=0.1)
        print(f"beat stopped: 503 after {time.monotonic() - stopped_at:.2f} s ({body['beat']})")
        assert THRESHOLD - 0.5 <= time.monotonic() - stopped_at < THRESHOLD + 3, time.monotonic() - stopped_at
        assert body["beat"].startswith("beat's last tick ") and body["beat"].endswith(" s ago"), body
        assert body["workers"] == body["redis"] == body["db"] == "ok"

        # The turn worker stopped: its heartbeat past the threshold, workers name the turn worker alone
        stopped_at = time.monotonic()
        turns.stop()
        body = wait_for(lambda: (b := _readyz(base)[1])["workers"] != "ok" and b, 10, "the turn worker named", every=0.1)
        print(f"turn worker stopped: 503 after {time.monotonic() - stopped_at:.2f} s ({body['workers']})")
        assert THRESHOLD - 0.5 <= time.monotonic() - stopped_at < THRESHOLD + 3, time.monotonic() - stopped_at
        assert body["workers"].startswith("no turn worker seen for "), body
        assert "background" not in body["workers"]

        # And the background worker stopped too: both named
        background.kill9()  # killed: a worker that never says goodbye ages out alike
        body = wait_for(lambda: (b := _readyz(base)[1])["workers"].count("no ") == 2 and b, 10, "both named", every=0.1)
        assert body["workers"].startswith("no turn worker seen for ") and "; no background worker seen for " in body["workers"]
        assert _readyz(base)[0] == 503
    finally:
        for proc in started:
            proc.stop()
        redis_server.close()
        if proxy is not None:
            proxy.close()
