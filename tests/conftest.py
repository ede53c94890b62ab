from __future__ import annotations

import os
import uuid

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chats.models import Membership
from mothership.celery import app as celery_app
from tests import factories
from tests.support import postgres, processes

# ``s3_server`` / ``s3_attachments``: a real S3-compatible server (moto's, as a process) for the attachments.
pytest_plugins = ["tests.support.s3"]


def pytest_collection_modifyitems(config, items):
    """Off PostgreSQL, the row-lock tests leave this run: ``tests/test_postgres_row_locks.py`` runs them on one."""
    if postgres.on_postgres():
        return
    elsewhere = [item for item in items if item.get_closest_marker(postgres.MARKER)]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if not item.get_closest_marker(postgres.MARKER)]


def pytest_terminal_summary(terminalreporter):
    if postgres.on_postgres():
        return  # the row-lock tests ran in this run itself
    for report in terminalreporter.stats.get("skipped", []):
        if "test_postgres_row_locks" in report.nodeid:
            terminalreporter.section("ROW-LOCK TESTS NOT RUN", sep="!", red=True, bold=True)
            terminalreporter.line(str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr), red=True)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """``make mutation`` forks one pytest per mutant, several at once: each gets a test database of its own."""
    if os.environ.get("MUTANT_UNDER_TEST"):
        from pytest_django.fixtures import _set_suffix_to_test_databases

        _set_suffix_to_test_databases(suffix=f"mutant{os.getpid()}")


@pytest.fixture(scope="session", autouse=True)
def _private_celery_queue():
    # A private queue: a worker of a running `make run` on the same Redis never takes test tasks.
    celery_app.conf.task_default_queue = f"mothership-test-{uuid.uuid4().hex[:12]}"
    yield


@pytest.fixture(scope="session", autouse=True)
def _metrics_flushed_only_when_asked():
    """This process's metrics reach Redis only when a test asks (``metrics.flush``, a scrape): a
    background flush would land in the Redis round trips a test counts (``redis_round_trips``)."""
    from django.conf import settings

    settings.MOTHERSHIP_METRICS_FLUSH_SECONDS = 24 * 3600
    yield


@pytest.fixture
def turns_not_enqueued(monkeypatch) -> list[str]:
    """Turns stay queued (no worker takes them; tests run them inline). Yields the ids that would have gone to the queue."""
    from streams.tasks import run_stream

    enqueued: list[str] = []
    monkeypatch.setattr(run_stream, "apply_async", lambda args, **options: enqueued.append(args[0]))
    return enqueued


@pytest.fixture
def make_user(db):
    def make(username: str | None = None, password: str = "pw-123456"):
        return factories.UserFactory(username=username or f"user-{uuid.uuid4().hex[:8]}", password=password)

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def workspace(user):
    return factories.MembershipFactory(user=user, workspace__name="Acme", role=Membership.Role.OWNER).workspace


@pytest.fixture
def chat(workspace):
    return factories.ChatFactory(workspace=workspace, title="First chat")


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def token(user):
    return Token.objects.create(user=user).key


@pytest.fixture(scope="session")
def live_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="session")
def live_worker(django_db_setup, django_db_blocker, live_tmp):
    """One real Celery worker process for the session, on the test database and real Redis."""
    proc = processes.start_worker(live_tmp)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def live_server_url(django_db_setup, django_db_blocker, live_tmp):
    """A real uvicorn serving the ASGI app (HTTP + WebSockets) on the test database."""
    proc, base = processes.start_server(live_tmp)
    yield base
    proc.stop()


@pytest.fixture
def private_redis(settings):
    """Point the app at a Redis of its own, which the test may stop to see Redis down."""
    from mothership.infra import redis as redis_client
    from tests.support.redis_server import PrivateRedis

    server = PrivateRedis()
    settings.REDIS_URL = server.url
    redis_client.reset_clients()
    yield server
    server.close()
    redis_client.reset_clients()


@pytest.fixture
def redis_round_trips(monkeypatch) -> list[bytes]:
    """Every request this process writes to Redis (a pipeline is one): a spy on redis-py's socket write.

    Opening a connection (its handshake) and redis-py's own health-check PINGs are left out;
    clear the list before the part to measure.
    """
    from redis.connection import AbstractConnection

    sent: list = []
    original_send, original_connect = AbstractConnection.send_packed_command, AbstractConnection.connect_check_health

    def send(self, command, check_health=True):
        if check_health and not getattr(self, "_opening", False):
            sent.append(command)
        return original_send(self, command, check_health)

    def connect(self, *args, **kwargs):
        self._opening = True
        try:
            return original_connect(self, *args, **kwargs)
        finally:
            self._opening = False

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send)
    monkeypatch.setattr(AbstractConnection, "connect_check_health", connect)
    return sent


@pytest.fixture
def browser_client(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client
