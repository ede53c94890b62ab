"""``/readyz`` in this process, against the real Redis: what each key says from the heartbeats it finds
(written as the workers and beat write them), Redis or the database unreachable, and the settings.
The real processes (workers, beat, a frozen Redis) are in tests/e2e/test_readiness.py."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from django.db import connections

from mothership.celery import background_queue
from mothership.infra import heartbeats
from mothership.infra import redis as redis_client
from mothership.infra.redis import get_redis
from tests.support import postgres
from tests.support.processes import ROOT, routed_to

pytestmark = pytest.mark.django_db

ALL_OK = {"db": "ok", "redis": "ok", "workers": "ok", "beat": "ok"}


@pytest.fixture
def turn_queue() -> str:
    """A deployment of its own (its queues): the session's workers beat on theirs, never on this one."""
    queue = f"ready-{uuid.uuid4().hex[:8]}"
    with routed_to(queue):
        yield queue


def _seen(queue: str, *, seconds_ago: float, name: str = "worker-1@host") -> None:
    """A worker's beat on ``queue``, ``seconds_ago`` on Redis' clock (as a worker that stopped then left it)."""
    seconds, micros = get_redis().time()
    get_redis().zadd(heartbeats.heartbeat_key("workers", queue), {name: seconds * 1000 + micros // 1000 - seconds_ago * 1000})


def _ticked(queue: str, *, seconds_ago: float) -> None:
    seconds, micros = get_redis().time()
    get_redis().set(heartbeats.heartbeat_key("beat", queue), int(seconds * 1000 + micros // 1000 - seconds_ago * 1000))


def test_ready_once_a_turn_worker_a_background_worker_and_beat_have_beaten(client, turn_queue):
    # Given a turn worker, a background worker and beat, each beating as it does
    heartbeats.worker_beat(name="turns@host", queues=[turn_queue])
    heartbeats.worker_beat(name="background@host", queues=[background_queue(turn_queue)])
    heartbeats.beat_tick(queue=turn_queue)
    # When a probe asks, without signing in
    response = client.get("/readyz")
    # Then every key is ok
    assert (response.status_code, response.json()) == (200, ALL_OK)
    assert "no-cache" in response["Cache-Control"]


def test_a_deployment_whose_workers_and_beat_never_beat_is_not_ready(client, turn_queue):
    # Given only another deployment's processes beat (a turn worker on a queue of its own)
    heartbeats.worker_beat(name="turns@elsewhere", queues=[f"other-{uuid.uuid4().hex[:8]}"])
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "db": "ok",
        "redis": "ok",
        "workers": "no turn worker seen; no background worker seen",
        "beat": "no beat tick seen",
    }


def test_workers_and_beat_last_seen_past_their_thresholds_are_named_with_how_long_ago(client, turn_queue, settings):
    settings.MOTHERSHIP_READY_WORKER_SECONDS = 30
    settings.MOTHERSHIP_READY_BEAT_SECONDS = 30
    # Given the last turn worker beat 31 s ago (another 400 s ago), a background worker just now, beat 47 s ago
    _seen(turn_queue, seconds_ago=31)
    _seen(turn_queue, seconds_ago=400, name="worker-2@host")
    heartbeats.worker_beat(name="background@host", queues=[background_queue(turn_queue)])
    _ticked(turn_queue, seconds_ago=47)
    response = client.get("/readyz")
    # Then each failing key says how long ago it was last seen, the rest are ok
    assert (response.status_code, response.json()) == (
        503,
        {"db": "ok", "redis": "ok", "workers": "no turn worker seen for 31 s", "beat": "beat's last tick 47 s ago"},
    )

    # When the turn worker beats again (and beat ticks): ready again
    heartbeats.worker_beat(name="worker-1@host", queues=[turn_queue])
    heartbeats.beat_tick(queue=turn_queue)
    assert client.get("/readyz").json() == ALL_OK

    # A background worker gone while the turn workers beat is named alone
    get_redis().delete(heartbeats.heartbeat_key("workers", background_queue(turn_queue)))
    _seen(background_queue(turn_queue), seconds_ago=600)
    assert client.get("/readyz").json()["workers"] == "no background worker seen for 10 min"


def test_a_worker_gone_for_a_day_is_forgotten_at_the_next_beat(turn_queue):
    _seen(turn_queue, seconds_ago=heartbeats.KEEP_SECONDS + 60, name="gone@host")
    heartbeats.worker_beat(name="live@host", queues=[turn_queue])
    key = heartbeats.heartbeat_key("workers", turn_queue)
    assert get_redis().zrange(key, 0, -1) == [b"live@host"]
    assert 0 < get_redis().ttl(key) <= heartbeats.KEEP_SECONDS


def test_redis_unreachable_is_named_without_its_password_and_workers_and_beat_are_unknown(client, settings, turn_queue):
    # Given a REDIS_URL with a password, on which nothing answers
    settings.REDIS_URL = "redis://:hunter2-in-the-url@127.0.0.1:1/0"
    redis_client.reset_clients()
    try:
        response = client.get("/readyz")
    finally:
        redis_client.reset_clients()
    body = response.json()
    assert response.status_code == 503
    assert body["db"] == "ok"
    assert body["redis"].startswith("unreachable: ConnectionError: ") and "127.0.0.1:1" in body["redis"]
    assert body["workers"] == body["beat"] == "unknown: Redis unreachable"
    assert "hunter2" not in response.content.decode()


@pytest.mark.skipif(postgres.on_postgres(), reason="PostgreSQL cut off: tests/e2e/test_readiness.py (a proxy the test cuts)")
def test_a_database_that_cannot_be_opened_is_named(client, monkeypatch, tmp_path, turn_queue):
    heartbeats.worker_beat(name="both@host", queues=[turn_queue, background_queue(turn_queue)])
    heartbeats.beat_tick(queue=turn_queue)
    # Given the SQLite file's folder is gone (a volume unmounted): each new connection fails to open it
    # (the check connects from a thread of its own, with the settings a new connection is made from)
    monkeypatch.setitem(connections.settings["default"], "NAME", str(tmp_path / "unmounted" / "db.sqlite3"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "db": "unreachable: OperationalError: unable to open database file",
        "redis": "ok",
        "workers": "ok",
        "beat": "ok",
    }


def test_thresholds_shorter_than_the_heartbeat_are_refused_at_start(tmp_path):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="mothership.settings", MOTHERSHIP_SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    env.update(MOTHERSHIP_READY_HEARTBEAT="10", MOTHERSHIP_READY_BEAT_SECONDS="5")
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "MOTHERSHIP_READY_WORKER_SECONDS and MOTHERSHIP_READY_BEAT_SECONDS must be longer than MOTHERSHIP_READY_HEARTBEAT" in (
        out.stderr
    )


def test_a_reason_never_carries_a_password(settings):
    from mothership.infra.readiness import _reason

    settings.REDIS_URL = "redis://:r3dis-secret@127.0.0.1:6379/0"
    database, saved = settings.DATABASES["default"], settings.DATABASES["default"].get("PASSWORD")
    database["PASSWORD"] = "pg-secret"
    try:
        said = [
            _reason(ConnectionError("could not reach postgres://app:pg-secret@db:5432/app\nline two")),
            _reason(ConnectionError('password authentication failed: "pg-secret" for user "app"')),
            _reason(TimeoutError("AUTH r3dis-secret timed out")),
        ]
    finally:
        if saved is None:
            database.pop("PASSWORD")
        else:
            database["PASSWORD"] = saved
    assert said == [
        "unreachable: ConnectionError: could not reach postgres://***@db:5432/app",
        'unreachable: ConnectionError: password authentication failed: "***" for user "app"',
        "unreachable: TimeoutError: AUTH *** timed out",
    ]


def test_readyz_takes_only_get(client):
    assert client.post("/readyz").status_code == 405
