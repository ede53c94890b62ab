"""Redis dies in the middle of a reply and comes back within seconds, with its data (from its
append-only file, as the embedded Redis keeps it) or empty: the reply completes, and a socket
that resumes afterwards assembles exactly the saved text, with no gap and no duplicate."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from celery import Task
from channels.testing.websocket import WebsocketCommunicator

from chats.models import Message
from mothership.celery import app as celery_app
from mothership.consumers import MothershipConsumer
from mothership.infra import redis as redis_client
from streams import eventlog, locks
from streams.models import Stream
from streams.providers.local import LocalProvider
from streams.services import stream_start
from streams.tasks import run_stream
from tests.support import processes
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TOKENS = 160  # at 20 tokens/s: an 8 s reply


@pytest.fixture(params=["data kept", "restarted empty"])
def outage(request, settings, tmp_path):
    """A Redis of its own for the app's locks, logs and queue, a worker on it, and a way to kill and restart it."""
    server = PrivateRedis(persist=request.param == "data kept")
    settings.REDIS_URL = server.url
    redis_client.reset_clients()
    worker = processes.start_worker_on_own_queue(
        tmp_path,
        name="restart",
        queues="turns",
        REDIS_URL=server.url,
        MOTHERSHIP_STREAM_HEARTBEAT=1,
        MOTHERSHIP_STREAM_LOCK_TTL=10,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=20,
        MOTHERSHIP_LOCAL_REPLY_TOKENS=TOKENS,
    )
    server.queue, server.worker = worker.queue, worker
    yield server
    worker.stop()
    server.close()
    redis_client.reset_clients()


def _enqueue(server: PrivateRedis, stream_id: str) -> None:
    """The turn's task, as Celery writes it, onto the worker's queue in the private Redis."""
    scratch = f"scratch-{uuid.uuid4().hex[:8]}"
    session = redis.Redis.from_url(celery_app.conf.broker_url)  # the suite's broker, not the private server
    Task.apply_async(run_stream, args=[stream_id], task_id=stream_id, queue=scratch)  # (turns_not_enqueued patched the bound one)
    (message,) = session.lrange(scratch, 0, -1)
    session.delete(scratch)
    redis.Redis.from_url(server.url).lpush(server.queue, message)


async def _resume(user, chat, stream_id: str) -> list[dict]:
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await communicator.send_json_to(
        {"type": "stream.resume", "conversationId": str(chat.id), "streamId": stream_id, "afterSeq": 0}
    )
    events = []
    while not events or events[-1]["type"] != "stream.completed":
        event = await communicator.receive_json_from(timeout=10)
        if event["type"].startswith("stream."):
            events.append(event)
    await communicator.disconnect()
    return events


async def test_a_reply_in_flight_when_redis_restarts_completes_with_every_character(outage, turns_not_enqueued, user, chat):
    from channels.db import database_sync_to_async

    turn = await database_sync_to_async(stream_start)(chat=chat, content="keep going")
    stream_id = str(turn.stream.id)
    _enqueue(outage, stream_id)
    await database_sync_to_async(wait_for)(lambda: len(eventlog.read(stream_id)) > 20, 20, "20 events in the log")

    time.sleep(1.2)  # what the append-only file holds is at most a second old
    outage.stop()
    time.sleep(3)
    outage.start()

    stream = await database_sync_to_async(wait_for)(
        lambda: Stream.objects.filter(pk=stream_id).exclude(status__in=Stream.LIVE_STATUSES).first(), 40, "the seal"
    )
    message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
    expected = "".join(
        LocalProvider(tokens_per_second=0, reply_tokens=TOKENS).reply_for([{"role": "user", "content": "keep going"}])
    )
    assert (stream.status, message.status, message.content) == ("completed", "complete", expected), outage.worker.output()[-3000:]

    events = await _resume(user, chat, stream_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gap, no duplicate
    assert "".join(e.get("text", "") for e in events if e["type"] == "stream.delta") == expected
    assert locks.lock_owner(chat_id=chat.id) is None
