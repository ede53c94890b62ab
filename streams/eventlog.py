"""Per-stream event log: Redis Stream ``mothership:stream:<stream_id>:events``.

Entry ids are ``<seq>-0``, so Redis itself refuses a duplicate or out-of-order seq and a
replay is an XRANGE from ``afterSeq + 1``. Appending and fanning out to the chat's channel
group happen in one Lua call: the event is in the log before any socket can see it live,
which is what makes join-then-replay gapless. The live append is fenced by the liveness
lock: a worker that lost its lock cannot write another event. An append is idempotent: one
whose seq is already in the log (retried after its reply was lost) changes nothing.
"""

from __future__ import annotations

import json
import time
import uuid

from django.conf import settings

from mothership.infra import groups
from mothership.infra.redis import aget_redis, get_redis
from streams import events
from streams.locks import lock_key

KEY_PREFIX = "mothership:stream:"
_FIELD = "e"
# A live stream's log outlives any plausible turn; it is shortened to the retention
# setting once the terminal event is written.
_LIVE_TTL_MS = 24 * 3600 * 1000

_APPEND = """
if ARGV[1] == '1' and redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return 0
end
local function release()
  if ARGV[8] == '1' and redis.call('GET', KEYS[2]) == ARGV[2] then
    redis.call('DEL', KEYS[2])
  end
end
local added = redis.pcall('XADD', KEYS[1], ARGV[3] .. '-0', 'e', ARGV[4])
if type(added) == 'table' and added.err then
  if string.find(added.err, 'equal or smaller', 1, true) then
    release()
    return 2  -- already in the log: an append retried after its reply was lost
  end
  return redis.error_reply(added.err)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[5])  -- when the stream last said anything
release()
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""


class Fenced(Exception):
    """The worker no longer owns the chat's lock; it must not write anything more."""


def log_key(stream_id) -> str:
    return f"{KEY_PREFIX}{uuid.UUID(str(stream_id))}:events"


def activity_key(stream_id) -> str:
    """Epoch ms of the stream's latest event (set by every append): how long it has been quiet."""
    return f"{KEY_PREFIX}{uuid.UUID(str(stream_id))}:at"


def append(*, chat_id, stream_id, event: dict, fenced: bool = True, release_lock: bool = False) -> None:
    """Append ``event`` to the stream's log and publish it to the chat's group.

    Raises ``Fenced`` when ``fenced`` and the stream no longer owns the chat's lock.
    ``release_lock`` (a terminal event) frees the chat's lock, if still the stream's, in the same
    call: a socket that sees the terminal event never finds the lock still held.
    """
    if not _append_script()(**_append_call(chat_id, stream_id, event, fenced, release_lock)):
        raise Fenced(str(stream_id))


def append_many(items: list[tuple]) -> list[bool]:
    """Fenced appends of several streams' events, ``(chat_id, stream_id, event)`` each, in one
    round trip. Each is checked against its own lock; False where that stream was fenced."""
    pipe = get_redis().pipeline(transaction=False)
    script = _append_script()
    for chat_id, stream_id, event in items:
        script(**_append_call(chat_id, stream_id, event, True), client=pipe)
    return [bool(ok) for ok in pipe.execute()]


def _append_call(chat_id, stream_id, event: dict, fenced: bool, release_lock: bool = False) -> dict:
    terminal = event["type"] in events.TERMINAL_TYPES
    ttl_ms = int(settings.MOTHERSHIP_EVENT_LOG_TTL * 1000) if terminal else _LIVE_TTL_MS
    text = events.encode(event)  # once: the log's entry, and the text every socket is sent
    now_ms = int(time.time() * 1000)
    message = events.group_message(event, text)
    message["at"] = now_ms  # the web process's delivery lag (mothership.infra.metrics)
    return {
        "keys": [log_key(stream_id), lock_key(chat_id), activity_key(stream_id)],
        "args": [
            "1" if fenced else "0",
            str(stream_id),
            int(event["seq"]),
            text,
            ttl_ms,
            groups.group_channel(groups.chat_group(chat_id)),
            groups.serialize(message),
            "1" if release_lock else "0",
            now_ms,
        ],
    }


_script = None


def _append_script():
    """The append script, registered once per Redis client (its SHA is computed once, not per event)."""
    global _script
    client = get_redis()
    if _script is None or _script.registered_client is not client:
        _script = client.register_script(_APPEND)
    return _script


def _decode(entries) -> list[dict]:
    return [json.loads(fields[_FIELD.encode()]) for _id, fields in entries]


def last_seq(stream_id) -> int:
    """The seq of the log's last entry (0 for an empty or missing log)."""
    entries = get_redis().xrevrange(log_key(stream_id), count=1)
    return int(entries[0][0].split(b"-")[0]) if entries else 0


def logs_discard(stream_ids) -> int:
    """Delete these streams' logs and activity keys at once (a purged chat's: they would expire
    anyway, but nothing of a purged chat should be readable meanwhile). Keys deleted."""
    keys = [key for stream_id in stream_ids for key in (log_key(stream_id), activity_key(stream_id))]
    return get_redis().delete(*keys) if keys else 0


def read(stream_id, *, after_seq: int = 0) -> list[dict]:
    return _decode(get_redis().xrange(log_key(stream_id), min=f"{after_seq + 1}-0", max="+"))


async def aread(stream_id, *, after_seq: int = 0) -> list[dict]:
    return _decode(await aget_redis().xrange(log_key(stream_id), min=f"{after_seq + 1}-0", max="+"))


def snapshot_text(log: list[dict]) -> str:
    return "".join(e.get("text", "") for e in log if e["type"] == events.DELTA)


def tool_calls_of(log: list[dict], *, open_calls: str = "running", open_content: str = "") -> list[dict]:
    """The record of a turn's tool calls, read from its events (as the turn keeps it while it
    runs): a call with no result yet is ``open_calls`` (``waiting`` while it waits for a person)."""
    calls: dict[str, dict] = {}
    for event in log:
        if event["type"] == events.TOOL_CALL:
            calls[event["callId"]] = {
                "callId": event["callId"],
                "tool": event["tool"],
                "arguments": event["arguments"],
                "status": open_calls,
                "content": open_content,
                "durationMs": None,
            }
        elif event["type"] == events.TOOL_APPROVAL and event["callId"] in calls and open_calls == "running":
            calls[event["callId"]]["status"] = "waiting"
        elif event["type"] == events.TOOL_RESULT and event["callId"] in calls:
            calls[event["callId"]].update(status=event["status"], content=event["content"], durationMs=event["durationMs"])
    return list(calls.values())
