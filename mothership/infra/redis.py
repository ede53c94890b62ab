"""One Redis client factory: a sync singleton per process, one async client per event loop.

Every Redis concern (liveness locks, event log, abort signals, simulated prompt cache)
builds on these two functions, never on the Django cache (which may swallow errors).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

# Commands here are short; a blocking read would be a bug, so bound every wait.
_SOCKET_TIMEOUT = 5.0
_CONNECT_TIMEOUT = 2.0


def _retry_once(retry_class):
    """After a Redis restart, every pooled connection is dead: a command on one is tried once more,
    on a new connection, at once (redis-py does not retry a closed connection unless told to).
    A Redis that is really away still fails fast; the callers that wait for it use ``retrying``."""
    return {"retry": retry_class(NoBackoff(), 1), "retry_on_error": [redis.ConnectionError]}


logger = logging.getLogger(__name__)

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def get_redis() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        with _sync_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_timeout=_SOCKET_TIMEOUT,
                    socket_connect_timeout=_CONNECT_TIMEOUT,
                    health_check_interval=30,
                    **_retry_once(Retry),
                )
    return _sync_client


def aget_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=_SOCKET_TIMEOUT,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            health_check_interval=30,
            **_retry_once(AsyncRetry),
        )
        _async_clients[loop] = client
    return client


def redis_uptime() -> int:
    """Seconds since this Redis started (a restarted one may have lost what it held)."""
    return int(get_redis().info("server")["uptime_in_seconds"])


def reset_clients() -> None:
    """Forget cached clients (tests that point REDIS_URL elsewhere; forked processes)."""
    global _sync_client
    with _sync_lock:
        if _sync_client is not None:
            _sync_client.close()
        _sync_client = None
    _async_clients.clear()


# What a Redis that is restarting, loading its data or unreachable for a moment raises.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError)


def retrying(call, *, for_seconds: float, what: str):
    """``call()``, retried with back-off (50 ms doubling to 1 s) while Redis is unavailable, for at
    most ``for_seconds``; then its error is raised. Any other error is raised at once."""
    delay, deadline, failures = 0.05, None, 0
    while True:
        try:
            result = call()
        except UNAVAILABLE as exc:
            now = time.monotonic()
            deadline = deadline or now + for_seconds
            if now >= deadline:
                raise
            if not failures:
                logger.warning("redis unavailable during %s (%s); retrying for up to %.0f s", what, exc, for_seconds)
            failures += 1
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(1.0, delay * 2)
            continue
        if failures:
            logger.warning("redis back for %s after %d failed attempts", what, failures)
        return result
