"""Stop requests reach the worker through Redis: a key (durable) plus a publish (fast).

``abort_request`` sets ``mothership:stream-abort:<stream_id>`` and publishes the id on
``mothership:stream-abort`` in one round trip. Each worker process runs one listener thread
subscribed to that channel; a running stream registers a callback with it. Registration
checks the key after the subscription is confirmed, so a stop that arrived before the stream
started (or while the listener was reconnecting) is never missed.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings

from mothership.infra.redis import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "mothership:stream-abort:"
CHANNEL = "mothership:stream-abort"
KEY_TTL_SECONDS = 3600  # far longer than any stream may wait in a queue


@dataclass(frozen=True)
class AbortRequest:
    reason: str  # "user" | "closed"
    requested_at: float  # epoch seconds, for the notice-latency figure


def abort_key(stream_id) -> str:
    return KEY_PREFIX + str(uuid.UUID(str(stream_id)))


def abort_request(*, stream_id, reason: str = "user") -> AbortRequest:
    request = AbortRequest(reason=reason, requested_at=time.time())
    payload = json.dumps({"stream_id": str(stream_id), "reason": reason, "at": request.requested_at})
    pipe = get_redis().pipeline(transaction=True)
    pipe.set(abort_key(stream_id), payload, ex=KEY_TTL_SECONDS)
    pipe.publish(CHANNEL, payload)
    pipe.execute()
    return request


def _parse(raw) -> AbortRequest | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return AbortRequest(reason=str(data.get("reason") or "user"), requested_at=float(data["at"]))
    except (ValueError, KeyError, TypeError):
        return AbortRequest(reason="user", requested_at=time.time())


def abort_pending(*, stream_id) -> AbortRequest | None:
    return _parse(get_redis().get(abort_key(stream_id)))


Callback = Callable[[AbortRequest], None]


class AbortListener(threading.Thread):
    """One per process: turns published stop requests into callbacks of registered streams."""

    def __init__(self):
        super().__init__(name="stream-abort-listener", daemon=True)
        self._callbacks: dict[str, Callback] = {}
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.stopping = threading.Event()

    def register(self, stream_id, callback: Callback) -> None:
        """Call ``callback`` once when a stop is requested for ``stream_id`` (maybe at once)."""
        key = str(stream_id)
        if not self.subscribed.wait(timeout=5):
            logger.warning("abort listener not subscribed yet; relying on the key check for %s", key)
        with self._lock:
            self._callbacks[key] = callback
        self._fire(key, abort_pending(stream_id=key))

    def unregister(self, stream_id) -> None:
        with self._lock:
            self._callbacks.pop(str(stream_id), None)

    def _fire(self, key: str, request: AbortRequest | None) -> None:
        if request is None:
            return
        with self._lock:
            callback = self._callbacks.pop(key, None)
        if callback is not None:
            callback(request)

    def _recheck_all(self, client: redis.Redis) -> None:
        with self._lock:
            keys = list(self._callbacks)
        if keys:
            for key, raw in zip(keys, client.mget([abort_key(k) for k in keys])):
                self._fire(key, _parse(raw))

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            client = redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=None, health_check_interval=30
            )
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            try:
                pubsub.subscribe(CHANNEL)
                while not self.stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        if failures:
                            logger.warning("abort listener reconnected to Redis")
                        failures = 0
                        self.subscribed.set()
                        self._recheck_all(client)  # anything published while we were away
                    elif message["type"] == "message":
                        try:
                            key = str(json.loads(message["data"])["stream_id"])
                        except (ValueError, KeyError, TypeError):
                            logger.warning("ignoring a malformed abort message %r", message["data"][:200])
                            continue
                        self._fire(key, _parse(message["data"]))
            except Exception as exc:  # never die: registered streams depend on this thread
                if self.stopping.is_set():
                    return
                if not failures:  # once per outage, not once per retry
                    logger.warning("abort listener lost Redis (%s); reconnecting", exc)
                failures += 1
                self.subscribed.clear()
                time.sleep(min(2.0, 0.1 * failures))
            finally:
                try:
                    pubsub.close()
                    client.close()
                except Exception:
                    pass


_listener: AbortListener | None = None
_listener_lock = threading.Lock()


def listener() -> AbortListener:
    global _listener
    with _listener_lock:
        if _listener is None or not _listener.is_alive():
            _listener = AbortListener()
            _listener.start()
            atexit.register(_listener.stopping.set)  # runs before the embedded Redis is stopped
        return _listener
