"""Rates counted in Redis, one Lua script per check, so that every process and thread shares one
exact count: ``mothership:rate:<scope>:<who>`` is a sorted set of the allowed attempts of the
last window (scored by Redis' own clock, in ms). An attempt past the rate is refused and not
recorded; its wait is the time until the oldest allowed attempt leaves the window.

A read-then-write count (DRF's throttles: read the history, then write it back) lets racing
requests all read the same history and all pass; here the read and the write are one step.
"""

from __future__ import annotations

import math
import uuid

from mothership.infra.redis import get_redis

KEY_PREFIX = "mothership:rate:"

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# KEYS[1] the window's attempts; ARGV: the count allowed, the window (ms), this attempt's id.
# Returns 0 when allowed, else the ms to wait.
_HIT = """
if redis.replicate_commands then redis.replicate_commands() end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""

_scripts: dict = {}


def _script():
    """The script registered once per Redis client (its SHA computed once, not per call)."""
    client = get_redis()
    script = _scripts.get("hit")
    if script is None or script.registered_client is not client:
        script = _scripts["hit"] = client.register_script(_HIT)
    return script


def parse_rate(rate: str) -> tuple[int, int]:
    """``30/min`` → (30, 60): the count and the window in seconds (DRF's notation; the settings check it)."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period[:1]]


def rate_key(scope: str, who: str) -> str:
    if not scope.replace("_", "").isalnum():
        raise ValueError(f"not a rate scope: {scope!r}")
    return f"{KEY_PREFIX}{scope}:{who}"


def rate_hit(*, scope: str, who: str, rate: str) -> float | None:
    """Count one attempt of ``who`` (a user id, an address) against ``rate``: None when it is allowed,
    else the seconds to wait (the attempt is not counted)."""
    count, seconds = parse_rate(rate)
    wait_ms = int(_script()(keys=[rate_key(scope, who)], args=[count, seconds * 1000, uuid.uuid4().hex]))
    return None if wait_ms == 0 else math.ceil(wait_ms / 1000)


def rate_reset(*, scope: str, who: str) -> None:
    """Forget ``who``'s attempts (tests; an operator lifting a limit)."""
    get_redis().delete(rate_key(scope, who))
