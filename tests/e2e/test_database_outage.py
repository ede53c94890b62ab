"""PostgreSQL unreachable for 10 s: from the worker as its turn ends (it keeps its lock, retries its
seal with back-off and seals the turn with its true status once the database is back), and from
the whole app while turns stream (pages and the API answer 503; every reply completes)."""

from __future__ import annotations

import json
import time

import dj_database_url
import httpx
import pytest
from django.conf import settings as django_settings
from websockets.sync.client import connect

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
    assert "database unavailable during the seal of stream" in cut_off_worker.output()


@pytest.fixture
def cut_off_app(tmp_path):
    """A web process and a worker that both reach PostgreSQL through one proxy the test can cut."""
    db = django_settings.DATABASES["default"]
    proxy = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    url = dj_database_url.parse(processes.database_url())
    env = {
        "DATABASE_URL": f"postgres://{url['USER']}@127.0.0.1:{proxy.port}/{url['NAME']}",
        "MOTHERSHIP_DB_POOL_TIMEOUT": 1,
        "MOTHERSHIP_STREAM_HEARTBEAT": 1,
        "MOTHERSHIP_STREAM_LOCK_TTL": 15,
        "MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": 20,
        "MOTHERSHIP_LOCAL_REPLY_TOKENS": 120,
    }
    worker = processes.start_worker_on_own_queue(tmp_path, name="app-outage", **env)
    web, base = processes.start_server(tmp_path, name="web-outage", MOTHERSHIP_CELERY_QUEUE=worker.queue, **env)
    yield proxy, worker, base
    web.stop()
    worker.stop()
    proxy.close()


def test_the_whole_app_rides_out_ten_seconds_without_its_database(cut_off_app, token, chat, workspace, turns_not_enqueued):
    """Pages and the API answer 503 with a message while the database is away; the reply in flight,
    and a turn its worker picks up during the outage, complete with every character afterwards."""
    from celery import Task

    from streams.services import stream_start
    from streams.tasks import run_stream
    from tests import factories

    proxy, worker, base = cut_off_app
    http = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=10)
    browser = httpx.Client(base_url=base, timeout=10)  # a signed-in page, as a browser holds it
    browser.get("/accounts/login/")
    signed_in = browser.post(
        "/accounts/login/",
        data={"username": "alice", "password": "pw-123456", "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"Referer": base + "/accounts/login/"},
    )
    assert signed_in.status_code == 302 and browser.get("/").status_code == 200
    other = factories.ChatFactory(workspace=workspace, title="other")
    sent = http.post(f"/api/mothership/chats/{chat.id}/messages", json={"content": "during"})
    assert sent.status_code == 201, sent.text
    in_flight = sent.json()["stream_id"]
    wait_for(lambda: len(eventlog.read(in_flight)) > 5, 10, "the first deltas")
    picked_up = stream_start(chat=factories.ChatFactory(workspace=workspace, title="queued"), content="picked up")
    with connect(base.replace("http", "ws") + f"/ws/?token={token}") as socket:
        proxy.cut()
        cut_at = time.monotonic()
        # The worker takes this turn while it cannot reach the database (the test's own connection does not pass the proxy).
        Task.apply_async(run_stream, args=[str(picked_up.stream.id)], task_id=str(picked_up.stream.id), queue=worker.queue)
        answers = [
            http.get("/api/mothership/chats"),
            http.get(f"/api/mothership/chats/{chat.id}"),
            http.post(f"/api/mothership/chats/{other.id}/messages", json={"content": "refused"}),
            browser.get("/"),
        ]
        for answer in answers:
            assert answer.status_code == 503, (answer.request.url, answer.status_code, answer.text[:300])
        assert [a.json()["detail"] for a in answers[:3]] == [answers[0].json()["detail"]] * 3
        assert "database" in answers[0].json()["detail"] and "database" in answers[3].text
        assert locks.lock_owner(chat_id=other.id) is None  # the refused send left nothing behind
        # A socket message that needs the database gets an error frame; the socket stays open.
        socket.send(json.dumps({"type": "subscribe", "conversationId": str(other.id)}))
        assert json.loads(socket.recv(timeout=15))["code"] == "unavailable"
        socket.send(json.dumps({"type": "ping"}))
        assert json.loads(socket.recv(timeout=5)) == {"type": "pong"}
        time.sleep(max(0.0, 10 - (time.monotonic() - cut_at)))
        proxy.restore()

        for stream_id, content in ((in_flight, "during"), (str(picked_up.stream.id), "picked up")):
            stream = wait_for(
                lambda s=stream_id: Stream.objects.filter(pk=s, status__in=["completed", "failed", "interrupted"]).first(),
                30,
                "the seal",
            )
            expected = "".join(
                LocalProvider(tokens_per_second=0, reply_tokens=120).reply_for([{"role": "user", "content": content}])
            )
            message = Message.objects.get(pk=stream.assistant_message_id)
            assert (stream.status, message.content) == ("completed", expected), worker.output()[-3000:]
            log = eventlog.read(stream_id)
            assert [e["seq"] for e in log] == list(range(1, len(log) + 1)) and log[-1]["type"] == "stream.completed"
        assert http.get("/api/mothership/chats").status_code == 200
        socket.send(json.dumps({"type": "subscribe", "conversationId": str(other.id)}))
        assert json.loads(socket.recv(timeout=5))["type"] == "subscribed"
    again = http.post(f"/api/mothership/chats/{other.id}/messages", json={"content": "after"})
    assert again.status_code == 201, again.text
    assert "database unavailable during the claim of stream" in worker.output()
