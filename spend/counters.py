"""Live spend in Redis: what each workspace has spent this month and each member today, turns in
flight included, so that every worker checks one number against a budget atomically.

``mothership:spend:month:<workspace>:<YYYY-MM>`` and ``…:day:<workspace>:<user>:<YYYY-MM-DD>``
hold nano-dollars: the ledger's total when first read (seeded from the database), plus what
turns charge as they stream. ``mothership:spend:charged:<charge id>`` (a hash: ``month``, ``day``)
is what a turn in flight has added to each period counter so far; its seal settles it (each
counter moves by the ledger's figure minus what the turn added to it, once; then ``settled``).
``mothership:spend:limits:<workspace>`` holds the budget, so a change reaches turns already
streaming. Every multi-step write is one Lua script; errors raise.

A counter that Redis lost is seeded again from the ledger at the next send or claim of its
workspace: what turns in flight had charged before that is missing from it until they seal
(and only that: a charge made while a counter was missing was not added to it, so it is not
taken back from it either).
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.utils import timezone

from mothership.infra.redis import get_redis

KEY_PREFIX = "mothership:spend:"
MONTH_TTL = 40 * 86400  # outlives its month
DAY_TTL = 2 * 86400
LIVE_TTL = 86400  # far longer than a turn (its seal marks it settled)
LIMITS_TTL = 40 * 86400  # written again on every change and every claim that finds it missing
LAST_TURN_TTL = 86400  # a chat idle longer is measured from the ledger at its next send

# One charge (a Lua function both scripts below share): keys month, day, live, limits; gate (1:
# refuse what would cross, 0: add, then say if over), the ttls of month, day and live; amount,
# month limit, day limit (the claim's, used when the limits hash is missing; "" = none), has_day.
# A missing period counter is not checked and not added to (it is seeded from the ledger, which
# knows nothing of turns in flight). Returns added, over, room (-1: no budget). Each workspace's
# limits are read once per script call.
_CHARGE_ONE = """
local limits = {}
local function limit(key, field, fallback)
  local cached = limits[key]
  if cached == nil then
    cached = false
    if redis.call('EXISTS', key) == 1 then cached = redis.call('HMGET', key, 'month', 'day') end
    limits[key] = cached
  end
  if cached then
    local v = cached[field == 'month' and 1 or 2]
    if v then return tonumber(v) end
    return nil
  end
  if fallback == '' then return nil end
  return tonumber(fallback)
end
local function charge_one(kmonth, kday, klive, klimits, gate, month_ttl, day_ttl, live_ttl, amount, mfallback, dfallback, has_day)
  local added, over, room = 0, 0, -1
  if redis.call('HEXISTS', klive, 'settled') == 1 then return added, over, room end
  amount = tonumber(amount)
  local month = redis.call('GET', kmonth)
  local day = false
  if has_day == '1' then day = redis.call('GET', kday) end
  local mroom, droom = false, false
  if month then
    local mlimit = limit(klimits, 'month', mfallback)
    if mlimit then mroom = mlimit - tonumber(month) end
  end
  if day then
    local dlimit = limit(klimits, 'day', dfallback)
    if dlimit then droom = dlimit - tonumber(day) end
  end
  if (mroom and amount > mroom) or (droom and amount > droom) then over = 1 end
  if over == 0 or gate == '0' then
    added = 1
    if month then redis.call('INCRBY', kmonth, amount); redis.call('HINCRBY', klive, 'month', amount) end
    if day then redis.call('INCRBY', kday, amount); redis.call('HINCRBY', klive, 'day', amount) end
    if month or day then redis.call('EXPIRE', klive, live_ttl) end
    if mroom then mroom = mroom - amount end
    if droom then droom = droom - amount end
  end
  if mroom and droom then room = math.min(mroom, droom) elseif mroom then room = mroom elseif droom then room = droom end
  if room ~= -1 and room < 0 then room = 0 end
  return added, over, room
end
"""

# Many charges in one call (no pipeline: a pipeline of scripts costs redis-py a SCRIPT EXISTS
# round trip). For charge i (from 0): KEYS[4i+1..4i+4] = month, day, live, limits; ARGV[1..4] =
# gate, month ttl, day ttl, live ttl; ARGV[5+4i..8+4i] = amount, month limit, day limit, has_day.
# Returns {added, over, room} per charge.
_CHARGE = (
    _CHARGE_ONE
    + """
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local k, a = 4 * i, 4 + 4 * i
  local added, over, room = charge_one(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], ARGV[1], ARGV[2], ARGV[3],
    ARGV[4], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  out[#out + 1] = added
  out[#out + 1] = over
  out[#out + 1] = room
end
return out
"""
)

# A turn's claim, in one call: the budget written where Redis lost it, then its prompt taken from
# what the budget has left, at the cached price when the chat's last turn was sealed within the
# prompt cache's lifetime (else the full one). KEYS = month, day, live, limits, the chat's last
# turn; ARGV = month ttl, day ttl, live ttl, limits ttl, the prompt's cost uncached, cached, now
# (epoch ms), the cache's lifetime (ms), month limit, day limit ("" = none), has_day. Returns
# {-1} when a period counter is missing (to be seeded from the ledger first), else {added, over, room}.
_CLAIM = (
    _CHARGE_ONE
    + """
if redis.call('EXISTS', KEYS[4]) == 0 then
  local fields = {'set', 1}
  if ARGV[9] ~= '' then fields[#fields + 1] = 'month'; fields[#fields + 1] = ARGV[9] end
  if ARGV[10] ~= '' then fields[#fields + 1] = 'day'; fields[#fields + 1] = ARGV[10] end
  redis.call('HSET', KEYS[4], unpack(fields))
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
if redis.call('EXISTS', KEYS[1]) == 0 or (ARGV[11] == '1' and redis.call('EXISTS', KEYS[2]) == 0) then return {-1} end
local amount = ARGV[5]
local last = redis.call('GET', KEYS[5])
if last then
  local at = tonumber(string.match(last, ':(%d+)$'))
  if at and tonumber(ARGV[7]) - at <= tonumber(ARGV[8]) then amount = ARGV[6] end
end
local added, over, room = charge_one(KEYS[1], KEYS[2], KEYS[3], KEYS[4], '1', ARGV[1], ARGV[2], ARGV[3], amount, ARGV[9],
  ARGV[10], ARGV[11])
return {added, over, room}
"""
)

# For charge i: KEYS[4i+1..4i+4] = month, day, live, its chat's last turn ("" for a warm);
# ARGV[1], ARGV[2] = live ttl, last-turn ttl; ARGV[3+3i..5+3i] = the ledger's figure, has_day, the
# last turn ("<tokens>:<epoch ms>"). Once per charge id: each counter moves by the ledger's figure
# minus what the charge added to it, and a turn's chat remembers its size (the next send's prompt).
_SETTLE = """
for i = 0, #KEYS / 4 - 1 do
  local k, a = 4 * i, 3 + 3 * i
  if redis.call('HEXISTS', KEYS[k + 3], 'settled') == 0 then
    local added = redis.call('HMGET', KEYS[k + 3], 'month', 'day')
    local amount = tonumber(ARGV[a])
    if redis.call('EXISTS', KEYS[k + 1]) == 1 then redis.call('INCRBY', KEYS[k + 1], amount - tonumber(added[1] or '0')) end
    if ARGV[a + 1] == '1' and redis.call('EXISTS', KEYS[k + 2]) == 1 then
      redis.call('INCRBY', KEYS[k + 2], amount - tonumber(added[2] or '0'))
    end
    redis.call('DEL', KEYS[k + 3])
    redis.call('HSET', KEYS[k + 3], 'settled', 1)
    redis.call('EXPIRE', KEYS[k + 3], ARGV[1])
    if KEYS[k + 4] ~= '' then redis.call('SET', KEYS[k + 4], ARGV[a + 2], 'EX', ARGV[2]) end
  end
end
return 1
"""

_scripts: dict = {}


def _script(source: str):
    """A script registered once per Redis client (its SHA computed once, not per call)."""
    client = get_redis()
    script = _scripts.get(source)
    if script is None or script.registered_client is not client:
        script = _scripts[source] = client.register_script(source)
    return script


def _uuid(value) -> str:
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


@dataclass(frozen=True)
class Scope:
    """Where a charge counts: its workspace's month and, for a member's turn, that member's day."""

    workspace_id: str
    user_id: int | None
    month: datetime.date  # its first day
    day: datetime.date

    @classmethod
    def of(cls, *, workspace_id, user_id, at: datetime.datetime) -> Scope:
        day = timezone.localdate(at)
        return cls(_uuid(workspace_id), int(user_id) if user_id is not None else None, day.replace(day=1), day)

    @property
    def month_key(self) -> str:
        return f"{KEY_PREFIX}month:{self.workspace_id}:{self.month:%Y-%m}"

    @property
    def day_key(self) -> str:
        return f"{KEY_PREFIX}day:{self.workspace_id}:{self.user_id}:{self.day:%Y-%m-%d}" if self.user_id is not None else ""

    @property
    def limits_key(self) -> str:
        return limits_key(self.workspace_id)

    def charge_keys(self, charge_id) -> tuple[str, str, str, str]:
        """The keys a charge of this scope touches (computed once per turn, not per frame)."""
        return self.month_key, self.day_key, live_key(charge_id), self.limits_key


@dataclass(frozen=True)
class Limits:
    """A budget in nano-dollars (None: no limit)."""

    month: int | None = None
    day: int | None = None

    @property
    def any(self) -> bool:
        return self.month is not None or self.day is not None


def limits_key(workspace_id) -> str:
    return f"{KEY_PREFIX}limits:{_uuid(workspace_id)}"


def live_key(charge_id) -> str:
    return f"{KEY_PREFIX}charged:{_uuid(charge_id)}"


# KEYS: the limits hash. ARGV: ttl, then field, value pairs. Written only where Redis has none.
_LIMITS_IF_MISSING = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


def limits_set(*, workspace_id, limits: Limits, if_missing: bool = False) -> None:
    """The budget every check reads (turns already streaming included); no budget is written too
    (``set`` alone), so a send need not ask the database. ``if_missing``: a copy read from the
    database, which must not overwrite a change written meanwhile."""
    key = limits_key(workspace_id)
    fields = {"set": 1, **({"month": limits.month} if limits.month is not None else {})}
    fields.update({"day": limits.day} if limits.day is not None else {})
    if if_missing:
        _script(_LIMITS_IF_MISSING)(keys=[key], args=[LIMITS_TTL, *(x for pair in fields.items() for x in pair)])
        return
    pipe = get_redis().pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping=fields)
    pipe.expire(key, LIMITS_TTL)
    pipe.execute()


@dataclass(frozen=True)
class Reading:
    """What a send's check reads in one round trip (None where Redis holds nothing)."""

    limits: Limits | None
    month: int | None
    day: int | None
    last_turn: LastTurn | None


def read(scope: Scope, *, chat_id) -> Reading:
    """One round trip: the budget Redis holds for the workspace, this month's and (for a member)
    today's spend, and the chat's last charged turn."""
    pipe = get_redis().pipeline(transaction=False)
    pipe.hmget(scope.limits_key, "set", "month", "day")
    pipe.mget([last_turn_key(chat_id), scope.month_key, *([scope.day_key] if scope.user_id is not None else [])])
    (is_set, month_limit, day_limit), (last, month, *day) = pipe.execute()
    limits = None
    if is_set is not None:
        limits = Limits(
            month=int(month_limit) if month_limit is not None else None, day=int(day_limit) if day_limit is not None else None
        )
    last_turn = None
    if last is not None:
        tokens, at_ms = last.decode().split(":")
        last_turn = LastTurn(str(chat_id), int(tokens), int(at_ms))
    return Reading(
        limits,
        int(month) if month is not None else None,
        int(day[0]) if day and day[0] is not None else None,
        last_turn,
    )


def spent(scope: Scope, *, seed: Callable[[Scope], tuple[int, int | None]], limits: Limits | None = None) -> tuple[int, int]:
    """This month's and (for a member) today's spend in ``scope``, turns in flight included; a
    counter Redis does not hold is seeded from ``seed(scope)`` (the ledger's totals) first, and
    with ``limits`` the budget is written where Redis lost it."""
    client = get_redis()
    keys = [scope.month_key, *([scope.day_key] if scope.user_id is not None else [])]
    pipe = client.pipeline(transaction=False)
    pipe.mget(keys)
    pipe.exists(scope.limits_key)
    values, has_limits = pipe.execute()
    if limits is not None and not has_limits:
        limits_set(workspace_id=scope.workspace_id, limits=limits, if_missing=True)
    if all(v is not None for v in values):
        month, *day = (int(v) for v in values)
        return month, day[0] if day else 0
    month_total, day_total = seed(scope)
    pipe = client.pipeline(transaction=False)
    pipe.set(scope.month_key, month_total, nx=True, ex=MONTH_TTL)
    if scope.user_id is not None:
        pipe.set(scope.day_key, day_total or 0, nx=True, ex=DAY_TTL)
    pipe.mget(keys)
    *_, values = pipe.execute()
    month, *day = (int(v or 0) for v in values)
    return month, day[0] if day else 0


@dataclass(frozen=True)
class LiveCharge:
    """What a turn charges its output to, built once per turn: its keys and its claim-time limits."""

    keys: tuple[str, str, str, str]
    month_limit: int | str  # "" for none
    day_limit: int | str
    has_day: int

    @classmethod
    def of(cls, *, charge_id, scope: Scope, limits: Limits) -> LiveCharge:
        return cls(
            keys=scope.charge_keys(charge_id),
            month_limit="" if limits.month is None else limits.month,
            day_limit="" if limits.day is None else limits.day,
            has_day=1 if scope.user_id is not None else 0,
        )


def claim(
    *, charge: LiveCharge, scope: Scope, last_turn_chat_id, uncached: int, cached: int, cache_ttl: float, limits: Limits
) -> bool | None:
    """A turn's prompt taken from its budget as the worker starts it (``_CLAIM``): ``cached`` is its
    cost if the chat's last turn was sealed within ``cache_ttl`` seconds, else ``uncached``. False
    (nothing taken) when it would cross the budget; None when a period counter must be seeded first."""
    flags = _script(_CLAIM)(
        keys=[*charge.keys, last_turn_key(last_turn_chat_id)],
        args=[
            MONTH_TTL,
            DAY_TTL,
            LIVE_TTL,
            LIMITS_TTL,
            uncached,
            cached,
            int(time.time() * 1000),
            int(cache_ttl * 1000),
            "" if limits.month is None else limits.month,
            "" if limits.day is None else limits.day,
            1 if scope.user_id is not None else 0,
        ],
    )
    if flags[0] == -1:
        return None
    return not flags[1]


def charge_many(charges: Iterable[tuple[LiveCharge, int]], *, gate: bool = False) -> list[tuple[bool, int | None]]:
    """Add each (live charge, amount) to its live spend, all in one call; for each, whether its
    workspace or member is now over budget, and what its tightest budget has left (None: no
    budget). With ``gate``, one that would cross is not added (and is reported over): a reservation."""
    keys, args = [], [1 if gate else 0, MONTH_TTL, DAY_TTL, LIVE_TTL]
    for charge, amount in charges:
        keys += charge.keys
        args += (amount, charge.month_limit, charge.day_limit, charge.has_day)
    if not keys:
        return []
    flags = _script(_CHARGE)(keys=keys, args=args)
    return [(bool(over), None if room == -1 else room) for over, room in zip(flags[1::3], flags[2::3], strict=True)]


def settle_many(charges: Iterable[tuple[object, Scope, int, LastTurn | None]]) -> None:
    """Each (charge id, scope, amount, last turn) is in the ledger: its counters move from its live
    figure to ``amount``, once per charge id, and a turn's chat keeps its ``LastTurn``; all in one call."""
    keys, args = [], [LIVE_TTL, LAST_TURN_TTL]
    for charge_id, scope, amount, last in charges:
        keys += [scope.month_key, scope.day_key, live_key(charge_id), last_turn_key(last.chat_id) if last else ""]
        args += [amount, 1 if scope.user_id is not None else 0, f"{last.tokens}:{last.sealed_at_ms}" if last else ""]
    if keys:
        _script(_SETTLE)(keys=keys, args=args)


@dataclass(frozen=True)
class LastTurn:
    """A chat's last charged turn: its tokens (prompt and reply: the conversation then) and its seal."""

    chat_id: str
    tokens: int
    sealed_at_ms: int


def last_turn_key(chat_id) -> str:
    return f"{KEY_PREFIX}last-turn:{_uuid(chat_id)}"


def last_turns(chat_ids: list) -> dict[str, LastTurn]:
    """The last charged turn of each of these chats that Redis remembers (one MGET)."""
    if not chat_ids:
        return {}
    found = {}
    for chat_id, value in zip(chat_ids, get_redis().mget([last_turn_key(c) for c in chat_ids]), strict=True):
        if value is not None:
            tokens, at_ms = value.decode().split(":")
            found[str(chat_id)] = LastTurn(str(chat_id), int(tokens), int(at_ms))
    return found
