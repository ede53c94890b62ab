"""kill -9 a worker mid-stream: the tile stops being yellow within the TTL, the sweeper keeps the text."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from channels.db import database_sync_to_async

from chats.models import Message
from mothership.celery import app as celery_app
from streams import locks
from streams.models import Stream
from streams.providers.local import LocalProvider
from tests.support import processes
from tests.support.sockets import subscribed_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TTL = 3


@pytest.fixture
def doomed_worker(tmp_path):
    """A worker on a queue of its own, with a 3 s lock TTL, that the test will SIGKILL."""
    queue = f"doomed-{uuid.uuid4().hex[:8]}"
    proc = processes.start_worker(
        tmp_path,
        name="doomed",
        MOTHERSHIP_CELERY_QUEUE=queue,
        MOTHERSHIP_STREAM_LOCK_TTL=TTL,
        MOTHERSHIP_STREAM_HEARTBEAT=1,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=40,
        MOTHERSHIP_LOCAL_REPLY_TOKENS=1000,
    )
    proc.queue = queue
    yield proc
    proc.stop()


@pytest.fixture
def sweeper(live_worker, tmp_path):
    """Starts real Celery beat ticking the sweeper every 0.5 s (the session's live worker runs the sweeps)."""
    started = []

    def start():
        started.append(processes.start_beat(tmp_path, MOTHERSHIP_SWEEP_INTERVAL=0.5))

    yield start
    for proc in started:
        proc.stop()


async def test_kill_9_mid_stream(sweeper, doomed_worker, api, user, chat):
    communicator = await subscribed_socket(user, chat)
    session_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = doomed_worker.queue  # this turn goes to the doomed worker
    try:
        sent = await database_sync_to_async(api.post)(
            f"/api/mothership/chats/{chat.id}/messages", {"content": "crash me"}, format="json"
        )
    finally:
        celery_app.conf.task_default_queue = session_queue
    stream_id = sent.json()["stream_id"]

    received = []
    while sum(e["type"] == "stream.delta" for e in received) < 15:
        received.append(await communicator.receive_json_from(timeout=10))
    doomed_worker.kill9()
    killed_at = time.monotonic()

    # No sweeper runs yet: the list stops showing the chat as streaming within TTL + 1 s by
    # reading the lock (read-time reconciliation) alone.
    while True:
        row = (await database_sync_to_async(api.get)("/api/mothership/chats")).json()[0]
        if row["state"] != "streaming":
            break
        assert time.monotonic() - killed_at <= TTL + 1, "tile still yellow after TTL + 1 s"
        await asyncio.sleep(0.1)
    assert row["active_stream_id"] is None
    assert (await database_sync_to_async(Stream.objects.get)(pk=stream_id)).status == "streaming"  # nobody sealed it

    # The sweeper finalizes it; the open socket gets the terminal event after every delta.
    sweeper()
    while received[-1]["type"] != "stream.interrupted":
        received.append(await communicator.receive_json_from(timeout=15))
    await communicator.disconnect()
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    streamed = "".join(e.get("text", "") for e in received if e["type"] == "stream.delta")

    stream = await database_sync_to_async(Stream.objects.get)(pk=stream_id)
    assert (stream.status, stream.reason) == ("interrupted", "worker_lost")
    message = await database_sync_to_async(Message.objects.get)(pk=sent.json()["message_id"])
    assert message.status == "interrupted"
    assert message.content == streamed  # every delta sent before the kill is kept
    full = "".join(LocalProvider(tokens_per_second=0, reply_tokens=1000).reply_for([{"role": "user", "content": "crash me"}]))
    assert full.startswith(streamed) and len(streamed) < len(full)
    assert received[-1]["partial"] is True and received[-1]["message_id"] == str(message.id)


async def test_a_stop_after_the_worker_died_answers_at_once_with_the_text_kept(doomed_worker, api, user, chat, settings):
    """No worker holds the lock: Stop does not wait out the settle bound for a worker that cannot answer."""
    settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT = 30
    communicator = await subscribed_socket(user, chat)
    with processes.routed_to(doomed_worker.queue):
        sent = await database_sync_to_async(api.post)(
            f"/api/mothership/chats/{chat.id}/messages", {"content": "crash me"}, format="json"
        )
    stream_id = sent.json()["stream_id"]
    received = []
    while sum(e["type"] == "stream.delta" for e in received) < 10:
        received.append(await communicator.receive_json_from(timeout=10))
    doomed_worker.kill9()
    while locks.lock_owner(chat_id=chat.id) is not None:  # its lock expires (no sweeper runs)
        await asyncio.sleep(0.1)

    started = time.monotonic()
    answer = await database_sync_to_async(api.post)(
        f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": stream_id}, format="json"
    )
    answered_in = time.monotonic() - started

    assert answered_in < 10, answered_in  # far under the 30 s it would wait for a worker holding the lock
    assert answer.json() == {"ok": True, "cancelled": True, "stream_id": stream_id, "reason": None, "settled": False}
    while received[-1]["type"] != "stream.cancelled":
        received.append(await communicator.receive_json_from(timeout=10))
    await communicator.disconnect()
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    streamed = "".join(e.get("text", "") for e in received if e["type"] == "stream.delta")
    message = await database_sync_to_async(Message.objects.get)(pk=sent.json()["message_id"])
    assert (message.status, message.content) == ("cancelled", streamed)
    assert received[-1]["partial"] is True
