"""Celery delivers a turn's task again (a broker redelivery, a replayed message): it does nothing,
whether the turn is still streaming or already finished."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chats.models import Message
from streams import eventlog
from streams.models import Stream
from streams.providers.local import LocalProvider
from streams.tasks import run_stream
from tests.support import processes
from tests.support.sockets import subscribed_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TOKENS = 60


@pytest.fixture
def worker(tmp_path):
    """A worker of its own whose replies take ~3 s, long enough to be delivered again mid-way."""
    proc = processes.start_worker_on_own_queue(
        tmp_path, name="redeliver", MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=20, MOTHERSHIP_LOCAL_REPLY_TOKENS=TOKENS
    )
    yield proc
    proc.stop()


async def _redeliver(worker, stream_id: str) -> None:
    """The same task (same id) once more, and wait until the worker says it found nothing to do."""

    def nothing_done() -> int:
        done = f"Task streams.run_stream[{stream_id}] succeeded"
        return sum(1 for line in worker.output().splitlines() if done in line and line.endswith("'not_queued'"))

    before = nothing_done()
    run_stream.apply_async(args=[stream_id], task_id=stream_id, queue=worker.queue)
    for _ in range(100):
        if nothing_done() > before:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the task delivered again did not answer not_queued:\n{worker.output()[-2000:]}")


async def test_a_task_delivered_again_while_streaming_or_after_the_end_does_nothing(worker, api, user, chat):
    communicator = await subscribed_socket(user, chat)

    def send():
        with processes.routed_to(worker.queue):
            return api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "again"}, format="json")

    stream_id = (await database_sync_to_async(send)()).json()["stream_id"]
    events = []
    while sum(e["type"] == "stream.delta" for e in events) < 3:
        events.append(await communicator.receive_json_from(timeout=10))

    await _redeliver(worker, stream_id)  # while it streams
    while events[-1]["type"] != "stream.completed":
        events.append(await communicator.receive_json_from(timeout=10))
    await _redeliver(worker, stream_id)  # after the end
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()

    expected = "".join(LocalProvider(tokens_per_second=0, reply_tokens=TOKENS).reply_for([{"role": "user", "content": "again"}]))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gap, no duplicate
    assert "".join(e.get("text", "") for e in events if e["type"] == "stream.delta") == expected
    assert [e["seq"] for e in eventlog.read(stream_id)] == [e["seq"] for e in events]
    stream = await database_sync_to_async(Stream.objects.get)(pk=stream_id)
    message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
    assert (stream.status, message.status, message.content) == ("completed", "complete", expected)
