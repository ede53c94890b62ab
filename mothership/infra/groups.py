"""Channel-group names, and publishing to a group from any process after commit.

A group's wire channel is named by channels-redis itself (``RedisPubSubLoopLayer``), never
rebuilt here, so a message published with one PUBLISH reaches exactly the sockets that
``group_add`` subscribed. Inside ``batched()`` the publishes of a block (a warm batch's pushes)
leave together in one pipeline.
"""

from __future__ import annotations

import contextvars
import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubLoopLayer
from django.conf import settings
from django.db import transaction

from mothership.infra.redis import get_redis


@functools.lru_cache(maxsize=4096)
def chat_group(chat_id) -> str:
    """A conversation's stream events. (Kept: the fan-out asks it for every event at every socket.)"""
    return f"chat.{uuid.UUID(str(chat_id))}"


def workspace_group(workspace_id) -> str:
    """A workspace's tiles (the dashboard)."""
    return f"workspace.{uuid.UUID(str(workspace_id))}"


def warming_group(chat_id) -> str:
    """A conversation's ``cache-warming`` surface."""
    return f"warming.{uuid.UUID(str(chat_id))}"


def user_group(user_id) -> str:
    """Every socket of one user: told when that user's access may have shrunk."""
    return f"user.{int(user_id)}"


@functools.cache
def _naming_layer() -> RedisPubSubLoopLayer:
    # Only its naming is used: it opens no connection until subscribed or sent through.
    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    return RedisPubSubLoopLayer(hosts=config["hosts"], prefix=config["prefix"])


def group_channel(group: str) -> str:
    """The Redis pub/sub channel that the channel layer subscribes a group's members to."""
    return _naming_layer()._get_group_channel_name(group)


def has_listeners(group: str) -> bool:
    """Whether any socket, in any web process, is subscribed to ``group`` now (one PUBSUB NUMSUB)."""
    ((_channel, count),) = get_redis().pubsub_numsub(group_channel(group))
    return count > 0


def serialize(message: dict) -> bytes:
    return get_channel_layer().serialize(message)


# The publishes waiting for the end of the current ``batched()`` block (per thread and task).
_pending: contextvars.ContextVar[list[tuple[str, bytes]] | None] = contextvars.ContextVar("publish_pending", default=None)


def publish(group: str, message: dict) -> None:
    """Send ``message`` to a channel group with one PUBLISH (no per-call layer connection).

    Inside ``batched()`` it waits for the end of the block and leaves with the others.
    """
    pending = _pending.get()
    if pending is not None:
        pending.append((group_channel(group), serialize(message)))
        return
    get_redis().publish(group_channel(group), serialize(message))


@contextmanager
def batched() -> Iterator[None]:
    """Every ``publish`` inside the block is sent when it ends, in one pipeline (one round trip).

    In the order published; nothing is sent if the block raises; a nested block joins the outer one.
    """
    if _pending.get() is not None:
        yield
        return
    pending: list[tuple[str, bytes]] = []
    reset = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(reset)
    if pending:
        pipe = get_redis().pipeline(transaction=False)
        for channel, data in pending:
            pipe.publish(channel, data)
        pipe.execute()


def publish_on_commit(group: str, message: dict) -> None:
    """Publish once the current transaction commits (at once outside one): events follow the data."""
    transaction.on_commit(lambda: publish(group, message))
