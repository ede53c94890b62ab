"""Liveness lock per chat: ``mothership:stream-lock:<chat_id>`` holds the live stream's id.

Taken with SET NX PX when the stream is created (a queued stream is alive), kept by the
worker's heartbeat (compare-and-expire), released by compare-and-delete. Errors raise:
only read-time reconciliation may degrade to "unknown".

Beside it, ``mothership:stream-worker:<stream_id>`` names the worker running the stream
(``streams.workers``): written with the lock's TTL by the claim and each heartbeat, in the same
script that renews the lock, so the sweeper can tell a lock whose worker is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.conf import settings

from mothership.infra.redis import get_redis

KEY_PREFIX = "mothership:stream-lock:"
WORKER_KEY_PREFIX = "mothership:stream-worker:"

_COMPARE_AND_EXPIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_COMPARE_AND_EXPIRE_NAMING_WORKER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[3] ~= '' then
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
  end
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lock_key(chat_id: uuid.UUID | str) -> str:
    if isinstance(chat_id, uuid.UUID):  # the common case; validating a UUID again costs µs per key
        return KEY_PREFIX + str(chat_id)
    return KEY_PREFIX + str(uuid.UUID(str(chat_id)))


def worker_key(stream_id: uuid.UUID | str) -> str:
    """The key naming the worker that runs ``stream_id``."""
    if isinstance(stream_id, uuid.UUID):
        return WORKER_KEY_PREFIX + str(stream_id)
    return WORKER_KEY_PREFIX + str(uuid.UUID(str(stream_id)))


def _ttl_ms() -> int:
    return int(settings.MOTHERSHIP_STREAM_LOCK_TTL * 1000)


def lock_acquire(*, chat_id, stream_id) -> bool:
    """Take the chat's lock for ``stream_id``; False if another stream holds it."""
    return bool(get_redis().set(lock_key(chat_id), str(stream_id), nx=True, px=_ttl_ms()))


def lock_heartbeat(*, chat_id, stream_id, worker: str | None = None) -> bool:
    """Extend the lock if ``stream_id`` still owns it. False means fenced: stop writing.

    ``worker`` (a ``streams.workers.Worker`` tag): the worker running it, named beside the lock in
    the same round trip."""
    script = get_redis().register_script(_COMPARE_AND_EXPIRE_NAMING_WORKER)
    return bool(script(keys=[lock_key(chat_id), worker_key(stream_id)], args=[str(stream_id), _ttl_ms(), worker or ""]))


def locks_heartbeat(pairs: Iterable[tuple]) -> int:
    """``lock_heartbeat`` for many (chat_id, stream_id) pairs in one round trip; how many were renewed."""
    pairs = list(pairs)
    if not pairs:
        return 0
    client = get_redis()
    script = client.register_script(_COMPARE_AND_EXPIRE)
    pipe = client.pipeline(transaction=False)
    for chat_id, stream_id in pairs:
        script(keys=[lock_key(chat_id)], args=[str(stream_id), _ttl_ms()], client=pipe)
    return sum(1 for renewed in pipe.execute() if renewed)


def lock_release(*, chat_id, stream_id) -> bool:
    """Delete the lock only if ``stream_id`` owns it (a late release never frees a newer turn)."""
    script = get_redis().register_script(_COMPARE_AND_DELETE)
    return bool(script(keys=[lock_key(chat_id)], args=[str(stream_id)]))


def lock_owner(*, chat_id) -> str | None:
    value = get_redis().get(lock_key(chat_id))
    return value.decode() if value is not None else None


def _owners_by_chat(keys: list[str], values: list) -> dict[str, str | None]:
    start = len(KEY_PREFIX)
    return {key[start:]: (v.decode() if v is not None else None) for key, v in zip(keys, values)}


def lock_owners(chat_ids: Iterable) -> dict[str, str | None]:
    """Owners of many chats' locks in one round trip (MGET)."""
    keys = [lock_key(c) for c in chat_ids]
    if not keys:
        return {}
    values = get_redis().mget(keys)
    return _owners_by_chat(keys, values)


def lock_owners_and_workers(pairs: Iterable[tuple]) -> tuple[dict[str, str | None], dict[str, bytes | None]]:
    """For ``(chat_id, stream_id)`` pairs, in one MGET: each chat's lock owner, and the worker tag
    each stream's companion key holds (by stream id)."""
    pairs = list(pairs)
    if not pairs:
        return {}, {}
    keys = [lock_key(chat_id) for chat_id, _ in pairs]
    values = get_redis().mget(keys + [worker_key(stream_id) for _, stream_id in pairs])
    n = len(pairs)
    return _owners_by_chat(keys, values[:n]), {str(stream_id): v for (_, stream_id), v in zip(pairs, values[n:])}
