"""One Redis client factory: a sync singleton per process, one async client per event loop.

Every Redis concern (liveness locks, event log, abort signals, simulated prompt cache)
builds on these two functions, never on the Django cache (which may swallow errors).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
import weakref

import redis
import redis.asyncio as aioredis
import redis.utils
from django.conf import settings
from redis._parsers import _AsyncHiredisParser, _AsyncRESP3Parser, _HiredisParser, _RESP3Parser
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.utils import HIREDIS_AVAILABLE

from mothership.infra import metrics

# redis-py reads its own version from the installed package's metadata for every connection
# it makes (``redis.driver_info``): a scan of ``sys.path``, about 1 ms, which never changes. A
# burst that opens connections (a process's first sends, each opening Celery's) paid it each time.
redis.utils.get_lib_version = functools.cache(redis.utils.get_lib_version)

# Commands here are short; a blocking read would be a bug, so bound every wait.
_SOCKET_TIMEOUT = 5.0
_CONNECT_TIMEOUT = 2.0


class WriteRefused(redis.ConnectionError):
    """Redis answers but refuses writes: ``MISCONF`` (its disk is full or failing), ``NOREPLICAS``
    (too few replicas), ``READONLY`` (a replica, after a failover), ``OOM`` (at ``maxmemory``),
    ``MASTERDOWN`` (a replica cut off from its primary). An outage, like a lost connection: waited
    for and retried, never taken for a failure of the turn. A ``ConnectionError``, as redis-py
    makes ``LOADING`` one, so the parser raises it at once and the connection is reset."""


# The codes of an outage, and the same codes inside a Lua script's error: Redis 7 puts the code
# first ("MISCONF … script: …"), Redis 6.2 after the script's position ("… @user_script: 1: -MISCONF …").
REFUSALS = ("MISCONF", "NOREPLICAS", "READONLY", "OOM", "MASTERDOWN")
_REFUSAL_IN_SCRIPT = re.compile(rf": -(?:{'|'.join(REFUSALS)}) ")


class _Refusals:
    """A parser mixin: every refusal of writes is a ``WriteRefused``, whatever the command."""

    # UNBLOCKED: a blocking read (the broker's BRPOP) cut short because the server became a replica.
    EXCEPTION_CLASSES = {**_RESP3Parser.EXCEPTION_CLASSES, **dict.fromkeys((*REFUSALS, "UNBLOCKED"), WriteRefused)}

    @classmethod
    def parse_error(cls, response):
        error = super().parse_error(response)
        if isinstance(error, WriteRefused) or _REFUSAL_IN_SCRIPT.search(response):
            return WriteRefused(response, status_code=response.split(" ", 1)[0])
        return error


def _refusing(parser):
    return type(f"Refusing{parser.__name__}", (_Refusals, parser), {})


# hiredis when installed, as redis-py chooses; else the pure-Python parsers of RESP3 (redis-py 8's protocol).
SYNC_PARSERS = {"hiredis": _refusing(_HiredisParser), "python": _refusing(_RESP3Parser)}
ASYNC_PARSERS = {"hiredis": _refusing(_AsyncHiredisParser), "python": _refusing(_AsyncRESP3Parser)}
_PARSER = "hiredis" if HIREDIS_AVAILABLE else "python"


def _not_refused(is_retryable):
    # A refusal is no dead connection: tried again at once it is refused again, and a pipeline
    # half applied before the refusal began would be applied twice. The callers wait for it.
    return lambda error: not isinstance(error, WriteRefused) and (is_retryable is None or is_retryable(error))


class _RetryOnce(Retry):
    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        return super().call_with_retry(do, fail, _not_refused(is_retryable), with_failure_count)


class _AsyncRetryOnce(AsyncRetry):
    async def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        return await super().call_with_retry(do, fail, _not_refused(is_retryable), with_failure_count)


def sync_parser():
    """The parser our sync clients read replies with (also the Celery broker's: ``infra.broker``)."""
    return SYNC_PARSERS[_PARSER]


def client_options(*, asynchronous: bool = False, parser: str = _PARSER) -> dict:
    """What both our clients (``get_redis``, ``aget_redis``) are built with.

    After a Redis restart, every pooled connection is dead: a command on one is tried once more,
    on a new connection, at once (redis-py does not retry a closed connection unless told to).
    A Redis that is really away still fails fast; the callers that wait for it use ``retrying``.
    """
    return {
        "socket_timeout": _SOCKET_TIMEOUT,
        "socket_connect_timeout": _CONNECT_TIMEOUT,
        "health_check_interval": 30,
        "parser_class": (ASYNC_PARSERS if asynchronous else SYNC_PARSERS)[parser],
        "retry": (_AsyncRetryOnce if asynchronous else _RetryOnce)(NoBackoff(), 1),
        "retry_on_error": [redis.ConnectionError],
    }


logger = logging.getLogger(__name__)

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def get_redis() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        with _sync_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(settings.REDIS_URL, **client_options())
    return _sync_client


def aget_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, **client_options(asynchronous=True))
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


# What a Redis that is restarting, loading its data, unreachable for a moment or refusing writes
# raises (``WriteRefused`` is a ``ConnectionError``).
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError)


def retrying(call, *, for_seconds: float, what: str):
    """``call()``, retried with back-off (50 ms doubling to 1 s) while Redis is unavailable, for at
    most ``for_seconds``; then its error is raised. Any other error is raised at once."""
    delay, deadline, failures = 0.05, None, 0
    while True:
        try:
            result = call()
        except UNAVAILABLE as exc:
            metrics.failed_attempt(metrics.REDIS_ERRORS, call)
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
