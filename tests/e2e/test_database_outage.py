"""PostgreSQL unreachable from the worker for 10 s as its turn ends: the worker keeps its lock,
retries its seal with back-off and seals the turn with its true status once the database is back."""

from __future__ import annotations

import time

import dj_database_url
import pytest
from django.conf import settings as django_settings

from chats.models import Message
from streams import eventlog, locks
from streams.models import Stream
from streams.providers.local import LocalProvider
from tests.support import processes
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.postgres]

TOKENS = 40  # at 20 tokens/s: a 2 s reply


@pytest.fixture
def cut_off_worker(tmp_path):
    """A worker that reaches PostgreSQL through a proxy the test can cut."""
    db = django_settings.DATABASES["default"]
    proxy = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    url = dj_database_url.parse(processes.database_url())
    worker = processes.start_worker_on_own_queue(
        tmp_path,
        name="outage",
        DATABASE_URL=f"postgres://{url['USER']}@127.0.0.1:{proxy.port}/{url['NAME']}",
        MOTHERSHIP_DB_POOL_TIMEOUT=1,
        MOTHERSHIP_STREAM_HEARTBEAT=1,
        MOTHERSHIP_STREAM_LOCK_TTL=3,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=20,
        MOTHERSHIP_LOCAL_REPLY_TOKENS=TOKENS,
    )
    worker.proxy = proxy
    yield worker
    worker.stop()
    proxy.close()


def test_a_turn_that_ends_while_the_database_is_away_is_sealed_completed_once_it_is_back(cut_off_worker, api, chat):
    with processes.routed_to(cut_off_worker.queue):
        sent = api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "seal me"}, format="json")
    stream_id = sent.json()["stream_id"]
    wait_for(lambda: len(eventlog.read(stream_id)) > 3, 10, "the first deltas")
    cut_off_worker.proxy.cut()  # the reply ends (~2 s) while the worker cannot reach the database

    time.sleep(10)
    assert Stream.objects.get(pk=stream_id).status == Stream.Status.STREAMING
    assert locks.lock_owner(chat_id=chat.id) == stream_id  # kept alive past its 3 s TTL: nobody takes it for dead
    cut_off_worker.proxy.restore()

    stream = wait_for(lambda: Stream.objects.filter(pk=stream_id, status=Stream.Status.COMPLETED).first(), 20, "the seal")
    expected = "".join(
        LocalProvider(tokens_per_second=0, reply_tokens=TOKENS).reply_for([{"role": "user", "content": "seal me"}])
    )
    message = Message.objects.get(pk=stream.assistant_message_id)
    assert (message.status, message.content) == ("complete", expected)
    log = eventlog.read(stream_id)
    assert log[-1]["type"] == "stream.completed" and [e["seq"] for e in log] == list(range(1, len(log) + 1))
    wait_for(lambda: locks.lock_owner(chat_id=chat.id) is None, 5, "the lock's release")
    assert "could not seal stream" in cut_off_worker.output()
