"""Turns and background work on separate queues; a turn that waits in the queue stays alive."""

from __future__ import annotations

import time
import uuid

import pytest

from chats import services as chat_services
from mothership.celery import background_queue
from mothership.infra.redis import get_redis
from streams import locks
from streams.models import Stream
from streams.services import streams_sweep
from tests.support import processes
from tests.support.waiting import wait_for
from warming.tasks import warm_batch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TTL = 3


def _send(api, chat, content: str = "wait your turn") -> str:
    response = api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": content}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["stream_id"]


@pytest.fixture
def one_thread_worker(tmp_path):
    """One worker thread on a turn queue of its own, a 3 s lock TTL, replies of ~10 s (``/echo``'s: its words)."""
    proc = processes.start_worker_on_own_queue(
        tmp_path,
        name="one-thread",
        concurrency=1,
        queues="turns",
        MOTHERSHIP_STREAM_LOCK_TTL=TTL,
        MOTHERSHIP_STREAM_HEARTBEAT=1,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=25,
        MOTHERSHIP_LOCAL_REPLY_TOKENS=250,
    )
    yield proc
    proc.stop()


def test_a_turn_queued_longer_than_the_lock_ttl_stays_alive_and_then_runs(one_thread_worker, api, workspace, settings):
    settings.MOTHERSHIP_STREAM_LOCK_TTL = TTL
    first, second = (chat_services.chat_create(workspace=workspace, title=t) for t in ("first", "second"))
    with processes.routed_to(one_thread_worker.queue):
        running = _send(api, first)
        wait_for(lambda: Stream.objects.get(pk=running).status == Stream.Status.STREAMING, 10, "the first turn to start")
        waiting = _send(api, second, "/echo waited its turn")  # a short reply once it runs

    # The only thread is busy for ~10 s: the second turn waits in the queue for more than the
    # TTL, through sweeps, and keeps its lock (the worker's keeper renews it).
    deadline = time.monotonic() + 2 * TTL
    while time.monotonic() < deadline:
        streams_sweep()
        assert Stream.objects.get(pk=waiting).status == Stream.Status.QUEUED
        assert locks.lock_owner(chat_id=second.id) == waiting
        time.sleep(0.5)
    assert Stream.objects.get(pk=running).status == Stream.Status.STREAMING  # it really was still waiting

    done = wait_for(lambda: Stream.objects.filter(pk=waiting, status=Stream.Status.COMPLETED).first(), 20, "the second turn")
    assert done.assistant_message.content == "waited its turn"
    assert locks.lock_owner(chat_id=second.id) is None


@pytest.fixture
def split_workers(tmp_path):
    """A turn worker and a background worker of one queue pair, as ``make run`` starts them."""
    queue = f"split-{uuid.uuid4().hex[:8]}"
    env = {"MOTHERSHIP_CELERY_QUEUE": queue}
    turns = processes.start_worker(tmp_path, name="turns", concurrency=4, queues="turns", **env)
    background = processes.start_worker(tmp_path, name="background", concurrency=2, queues="background", **env)
    yield queue
    turns.stop()
    background.stop()
    get_redis().delete(background_queue(queue))


def test_a_turn_starts_at_once_behind_ten_thousand_queued_warms(split_workers, api, chat):
    queue = split_workers
    redis = get_redis()
    scratch = f"scratch-{uuid.uuid4().hex[:8]}"  # a queue nobody consumes, to capture one real message
    warm_batch.apply_async(args=[[str(uuid.uuid4())], "no-such-claim"], queue=scratch)
    (message,) = redis.lrange(scratch, 0, -1)  # a real warm task, which claims nothing when it runs
    redis.delete(scratch)
    backlog = background_queue(queue)
    pipe = redis.pipeline(transaction=False)
    for _ in range(10_000 // 500):
        pipe.lpush(backlog, *[message] * 500)
    pipe.execute()

    with processes.routed_to(queue):
        stream_id = _send(api, chat)
    wait_for(lambda: Stream.objects.get(pk=stream_id).status != Stream.Status.QUEUED, 10, "the turn to start")
    # It did not wait behind the warms: most of them are still queued.
    assert redis.llen(backlog) > 5_000
    wait_for(lambda: Stream.objects.get(pk=stream_id).status == Stream.Status.COMPLETED, 20, "the turn to finish")
