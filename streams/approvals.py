"""Tool calls that wait for a person, and the call a turn is running, in Redis.

``mothership:tool-approval:<stream_id>:<call_id>`` holds ``waiting`` until a member answers
(``approve`` or ``deny``, set once, by compare-and-set); ``mothership:tool-waiting:<stream_id>``
holds the id of the call its turn waits on, with the lock's TTL, renewed by the waiting worker:
a worker that dies stops saying "needs you" within one TTL, as its lock does. The reconciled
chat view reads the waiting key in the same MGET as the lock (``streams.selectors``).

``mothership:tool-running:<stream_id>`` holds ``<epoch ms>|<server>.<tool>`` while the turn's call
runs (the lock's TTL, renewed while it runs): a tile says which tool runs and for how long.
"""

from __future__ import annotations

import re
import time
import uuid

from mothership.infra.redis import get_redis

KEY_PREFIX = "mothership:tool-approval:"
WAITING_PREFIX = "mothership:tool-waiting:"
RUNNING_PREFIX = "mothership:tool-running:"
WAITING, APPROVE, DENY = "waiting", "approve", "deny"
_DECISION_TTL_MS = 24 * 3600 * 1000
CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

# Decide once: only a call still waiting takes a decision; else what it already holds (or "missing").
_DECIDE = """
local held = redis.call('GET', KEYS[1])
if held == 'waiting' then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
  return 'decided'
end
return held or 'missing'
"""
# Compare-and-delete: a turn clears only its own call's waiting mark.
_CLEAR = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def call_id_check(call_id: str) -> str:
    """``call_id`` if it is one (1 to 100 letters, digits and ``_.:-``), else ``ValueError``."""
    if not isinstance(call_id, str) or not CALL_ID.match(call_id):
        raise ValueError("A tool call id is 1 to 100 letters, digits, _ . : or -.")
    return call_id


def approval_key(stream_id, call_id: str) -> str:
    return f"{KEY_PREFIX}{uuid.UUID(str(stream_id))}:{call_id_check(call_id)}"


def waiting_key(stream_id) -> str:
    return f"{WAITING_PREFIX}{uuid.UUID(str(stream_id))}"


def running_key(stream_id) -> str:
    return f"{RUNNING_PREFIX}{uuid.UUID(str(stream_id))}"


def tool_running(*, stream_id, tool: str, ttl_ms: int) -> None:
    get_redis().set(running_key(stream_id), f"{int(time.time() * 1000)}|{tool}", px=ttl_ms)


def tool_running_renew(*, stream_id, ttl_ms: int) -> None:
    get_redis().pexpire(running_key(stream_id), ttl_ms)


def tool_done(*, stream_id) -> None:
    get_redis().delete(running_key(stream_id))


def running_of(value: bytes | None) -> tuple[str, int] | None:
    """A running mark's (tool, since epoch ms), or None."""
    if value is None:
        return None
    since, _, tool = value.decode().partition("|")
    return (tool, int(since)) if since.isdigit() and tool else None


def approval_open(*, stream_id, call_id: str, ttl_ms: int) -> None:
    """The call waits for a person: its decision key and the turn's waiting mark, in one round trip."""
    pipe = get_redis().pipeline(transaction=True)
    pipe.set(approval_key(stream_id, call_id), WAITING, px=_DECISION_TTL_MS)
    pipe.set(waiting_key(stream_id), call_id, px=ttl_ms)
    pipe.execute()


def approval_renew(*, stream_id, call_id: str, ttl_ms: int) -> None:
    get_redis().set(waiting_key(stream_id), call_id, px=ttl_ms)


def approval_decision(*, stream_id, call_id: str) -> str | None:
    """``waiting``, ``approve``, ``deny`` or None (no such call)."""
    value = get_redis().get(approval_key(stream_id, call_id))
    return value.decode() if value is not None else None


def approval_decide(*, stream_id, call_id: str, approve: bool) -> str:
    """``decided``; or, for a call not waiting, what it holds (``approve`` / ``deny``) or ``missing``."""
    client = get_redis()
    answer = client.eval(_DECIDE, 1, approval_key(stream_id, call_id), APPROVE if approve else DENY)
    return answer.decode() if isinstance(answer, bytes) else str(answer)


def approval_close(*, stream_id, call_id: str) -> None:
    """The call no longer waits (answered, stopped, or its turn ended)."""
    get_redis().eval(_CLEAR, 1, waiting_key(stream_id), call_id)
