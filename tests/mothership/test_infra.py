"""Leaf infrastructure against the real database and Redis: bulk row updates, batched publishes."""

from __future__ import annotations

import datetime

import pytest
from channels.layers import get_channel_layer
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mothership.infra import bulk, groups
from mothership.infra.redis import get_redis
from tests import factories
from warming.models import WarmingSchedule

pytestmark = pytest.mark.django_db


def test_update_by_pk_writes_each_row_its_own_values_nulls_included(workspace):
    # Given 120 schedules (more than one SQLite statement holds) and one that is not part of the update
    chats = factories.ChatFactory.create_batch(121, workspace=workspace)
    rows = [WarmingSchedule.objects.create(chat=chat, enabled=True, last_error="old") for chat in chats]
    untouched = rows.pop()
    now = timezone.now()
    for i, row in enumerate(rows):
        row.warm_count, row.last_cache_pct = i, (None if i % 2 else i / 2)
        row.next_warm_at = now + datetime.timedelta(seconds=i) if i % 3 else None
        row.enabled, row.last_error, row.claim_token = bool(i % 2), f"error {i}", ""

    # When they are written in one go
    with CaptureQueriesContext(connection) as queries:
        updated = bulk.update_by_pk(rows, ["warm_count", "last_cache_pct", "next_warm_at", "enabled", "last_error"])

    # Then each row holds exactly its own values, and nothing else changed
    assert updated == 120
    size = connection.ops.bulk_batch_size([None] * 6, rows)
    assert len(queries) == -(-120 // size)  # one statement per chunk (all 120 at once on PostgreSQL)
    stored = {s.chat_id: s for s in WarmingSchedule.objects.filter(chat__in=chats)}
    for i, row in enumerate(rows):
        s = stored[row.chat_id]
        assert (s.warm_count, s.last_cache_pct, s.next_warm_at, s.enabled, s.last_error) == (
            i,
            row.last_cache_pct,
            row.next_warm_at,
            bool(i % 2),
            f"error {i}",
        )
    assert (stored[untouched.chat_id].warm_count, stored[untouched.chat_id].last_error) == (0, "old")
    assert bulk.update_by_pk([], ["warm_count"]) == 0


def _subscribed(*groups_):
    pubsub = get_redis().pubsub()
    pubsub.subscribe(*[groups.group_channel(g) for g in groups_])
    for _ in groups_:
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    return pubsub


def _received(pubsub, wait=0.3) -> list[dict]:
    messages = []
    while (message := pubsub.get_message(timeout=wait)) is not None:
        messages.append(get_channel_layer().deserialize(message["data"]))
    return messages


def test_publishes_inside_batched_leave_together_in_order_when_the_block_ends(redis_round_trips):
    a, b = groups.chat_group("9f0b7a1e-0d5c-4c39-9d4e-6b2b7f1a0001"), groups.chat_group("9f0b7a1e-0d5c-4c39-9d4e-6b2b7f1a0002")
    pubsub = _subscribed(a, b)
    redis_round_trips.clear()

    with groups.batched():
        groups.publish(a, {"type": "x", "n": 1})
        with groups.batched():  # a nested block joins the outer one
            groups.publish(b, {"type": "x", "n": 2})
        groups.publish(a, {"type": "x", "n": 3})
        assert _received(pubsub, wait=0.1) == [] and redis_round_trips == []

    assert [m["n"] for m in _received(pubsub)] == [1, 2, 3] and len(redis_round_trips) == 1
    with pytest.raises(RuntimeError), groups.batched():
        groups.publish(a, {"type": "x", "n": 4})
        raise RuntimeError("the block failed")
    groups.publish(a, {"type": "x", "n": 5})  # outside a block: at once
    assert [m["n"] for m in _received(pubsub)] == [5]
    pubsub.close()


def test_a_new_redis_connection_does_not_read_package_metadata(monkeypatch):
    """redis-py looked its own version up in the installed packages for every connection it made."""
    import importlib.metadata

    import redis

    import mothership.infra.redis  # noqa: F401 (its fix-up)

    redis.utils.get_lib_version()  # the one lookup of the process
    read = []
    monkeypatch.setattr(importlib.metadata, "version", lambda name: read.append(name) or "0")
    redis.Connection()
    redis.Connection()
    assert read == []


def test_celerys_result_backend_class_is_looked_up_once_for_every_thread(monkeypatch):
    import threading

    from celery.app import backends

    from mothership.celery import app

    looked_up = []
    real = backends.by_url
    monkeypatch.setattr(backends, "by_url", lambda *args, **kwargs: looked_up.append(1) or real(*args, **kwargs))
    app.__dict__.pop("_backend_class", None)
    for _ in range(3):  # one thread after another: each keeps a backend of its own
        thread = threading.Thread(target=app._get_backend)
        thread.start()
        thread.join()
    app._get_backend()
    assert len(looked_up) == 1


def test_the_broker_publishes_with_one_redis_client_per_channel_and_a_new_one_for_a_new_pool(monkeypatch):
    """kombu made a redis-py client (its table of callbacks) for every message it put."""
    import uuid

    import redis
    from kombu import Producer, Queue

    from mothership.celery import app

    queue = Queue(f"test-broker-{uuid.uuid4().hex}")
    made = []
    real_init = redis.Redis.__init__
    monkeypatch.setattr(redis.Redis, "__init__", lambda self, *a, **kw: made.append(1) or real_init(self, *a, **kw))
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        producer = Producer(channel)
        queue(channel).declare()
        made.clear()
        for n in range(3):
            producer.publish({"n": n}, routing_key=queue.name)
        assert len(made) <= 1  # the first publish of this channel may make it
        first = channel._create_client()
        channel._disconnect_pools()  # (as after a fork or a lost connection)
        producer.publish({"n": 3}, routing_key=queue.name)
        assert channel._create_client() is not first and channel._create_client().connection_pool is channel.pool
        got = [queue(channel).get(no_ack=True) for _ in range(4)]
        assert sorted(message.payload["n"] for message in got) == [0, 1, 2, 3]
        queue(channel).delete()


def test_a_turns_publish_finds_every_celery_setting_it_reads_in_the_first_place_it_looks(monkeypatch):
    """Celery reads its settings at every publish; one missing from Django's settings is looked for in
    every layer of its configuration (four times the cost of one found)."""
    import uuid

    from celery.utils import collections as celery_collections

    from mothership.celery import app
    from mothership.infra.redis import get_redis
    from streams.services.start import stream_enqueue

    real = celery_collections.ConfigurationView.__getitem__
    read = []

    def looked_up(view, key):
        found = any(k in view.maps[1] for k in view._to_keys(key))  # the layer of Django's settings
        read.append((key, found))
        return real(view, key)

    stream_enqueue(stream_id=uuid.uuid4())  # (the first publish of a process sets up its pools)
    monkeypatch.setattr(celery_collections.ConfigurationView, "__getitem__", looked_up)
    stream_enqueue(stream_id=uuid.uuid4())
    monkeypatch.undo()
    assert read and [key for key, found in read if not found] == []
    get_redis().delete(app.conf.task_default_queue)
