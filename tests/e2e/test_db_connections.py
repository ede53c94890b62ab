"""PostgreSQL connections do not grow with the turns in flight: a turn holds none while the model writes."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import connection

from streams import eventlog
from streams.models import Stream
from streams.services import stream_cancel, stream_start
from tests.factories import ChatFactory
from tests.support import processes
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.postgres]

TURNS, POOL = 24, 3


def _connections_of(pid: int) -> int:
    """Backends opened by one process (matched through the client ports it holds)."""
    import psutil

    ports = {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.raddr and c.raddr.port == 5432}
    with connection.cursor() as cursor:
        cursor.execute("select client_port from pg_stat_activity where datname = current_database()")
        return sum(1 for (port,) in cursor.fetchall() if port in ports)


def test_many_live_turns_share_a_small_pool(tmp_path):
    queue = f"pool-{uuid.uuid4().hex[:8]}"
    worker = processes.start_worker(
        tmp_path,
        name="pool",
        concurrency=TURNS,
        MOTHERSHIP_CELERY_QUEUE=queue,
        MOTHERSHIP_DB_POOL_SIZE=POOL,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=20,
        MOTHERSHIP_LOCAL_REPLY_TOKENS=400,
    )
    try:
        chats = [ChatFactory() for _ in range(TURNS)]
        with processes.routed_to(queue):
            turns = [stream_start(chat=chat, content=f"turn {i}") for i, chat in enumerate(chats)]
        ids = [t.stream.id for t in turns]
        deadline = time.monotonic() + 30
        while Stream.objects.filter(pk__in=ids, status="streaming").count() < TURNS:
            assert time.monotonic() < deadline, "not every turn is streaming: they wait for a connection"
            time.sleep(0.1)
        # Every turn has written part of its reply, and none has ended: all of them are mid-reply at once.
        wait_for(lambda: min(eventlog.last_seq(pk) for pk in ids) >= 4, 20, "every turn to write its first deltas")
        assert Stream.objects.filter(pk__in=ids, status="streaming").count() == TURNS
        held = _connections_of(worker.pid)
        assert 1 <= held <= POOL, held
        for chat, turn in zip(chats, turns, strict=True):
            stream_cancel(chat=chat, stream_id=turn.stream.id)
        assert Stream.objects.filter(pk__in=ids, status="cancelled").count() == TURNS
    finally:
        worker.stop()
