"""A Redis that refuses writes is unavailable, not broken: every refusal code, from a command, a
pipeline or one of our Lua scripts, reaches our code as ``WriteRefused`` (a ``ConnectionError``,
so every ``except UNAVAILABLE`` waits for it), with either parser, sync and async, on the Redis
the wheel ships (6.2) and on the system's Redis 7 when there is one."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from mothership.infra.redis import ASYNC_PARSERS, SYNC_PARSERS, UNAVAILABLE, WriteRefused, client_options, retrying
from streams import eventlog, events, locks
from tests.support.redis_server import REFUSALS, PrivateRedis, server_version

SYSTEM_REDIS = shutil.which("redis-server")
BINARIES = [
    pytest.param(None, id="wheel"),
    pytest.param(
        SYSTEM_REDIS,
        id="system",
        marks=pytest.mark.skipif(
            SYSTEM_REDIS is None or server_version(SYSTEM_REDIS) < (7,), reason="no Redis 7 on this machine"
        ),
    ),
]
# Our scripts' two ways of writing: ``redis.call`` (the lock's compare-and-expire) and
# ``redis.pcall`` whose error is handed back with ``redis.error_reply`` (the event log's append).
SCRIPTS = {"call": locks._COMPARE_AND_EXPIRE, "pcall": eventlog._APPEND}


@pytest.fixture(scope="module", params=BINARIES)
def server(request):
    server = PrivateRedis(binary=request.param)
    yield server
    server.close()


def _sync(server, parser: str) -> redis.Redis:
    return redis.Redis.from_url(server.url, **client_options(parser=parser))


def _async(server, parser: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(server.url, **client_options(asynchronous=True, parser=parser))


def _script_args(name: str) -> dict:
    """Arguments under which the script reaches its write."""
    if name == "call":  # the lock is ours: PEXPIRE
        return {"keys": ["refusal:lock"], "args": ["me", 1000]}
    chat_id, stream_id = uuid.uuid4(), uuid.uuid4()
    event = events.stream_event(type=events.DELTA, chat_id=chat_id, stream_id=stream_id, seq=1, text="x")
    return eventlog._append_call(chat_id, stream_id, event, False)


def _writes(client: redis.Redis) -> dict:
    pipe = client.pipeline(transaction=False)
    pipe.get("refusal:key").set("refusal:key", "2")
    return {
        "command": lambda: client.set("refusal:key", "1"),
        "pipeline": pipe.execute,
        "transaction": lambda: client.pipeline(transaction=True).incr("refusal:n").expire("refusal:n", 60).execute(),
        **{
            f"script ({name})": (lambda s=script, n=name: client.register_script(s)(**_script_args(n)))
            for name, script in SCRIPTS.items()
        },
    }


def _answers(code: str) -> str:
    """The code a write is refused with: a replica cut off from its primary says READONLY to a write."""
    return "READONLY|MASTERDOWN" if code == "MASTERDOWN" else code


@pytest.mark.parametrize("code", REFUSALS)
@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_every_refusal_of_a_write_is_write_refused_for_the_sync_client(server, code, parser):
    client = _sync(server, parser)
    server.control().set("refusal:lock", "me")
    server.refuse_writes(code)
    try:
        for form, write in _writes(client).items():
            if code == "OOM" and form == "script (call)":
                assert write() == 1  # PEXPIRE takes no memory: at ``maxmemory`` a turn still keeps its lock
                continue
            with pytest.raises(WriteRefused, match=_answers(code)) as refused:
                write()
            assert isinstance(refused.value, UNAVAILABLE), form
        # Reads are still answered, but for a replica cut off and MISCONF, which refuses PING too
        # (the client's health check on a new connection).
        if code not in ("MASTERDOWN", "MISCONF"):
            assert client.get("refusal:lock") == b"me"
        elif code == "MASTERDOWN":
            with pytest.raises(WriteRefused, match="MASTERDOWN"):
                client.get("refusal:lock")
    finally:
        server.accept_writes()
    assert client.set("refusal:key", "after") and client.get("refusal:key") == b"after"  # the same client, at once
    client.close()


@pytest.mark.parametrize("code", REFUSALS)
@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_every_refusal_of_a_write_is_write_refused_for_the_async_client(server, code, parser):
    async def scenario():
        client = _async(server, parser)
        await client.set("refusal:lock", "me")
        try:
            server.refuse_writes(code)
            try:
                with pytest.raises(WriteRefused, match=_answers(code)):
                    await client.set("refusal:key", "1")
                with pytest.raises(WriteRefused, match=_answers(code)):
                    await client.pipeline(transaction=True).incr("refusal:n").expire("refusal:n", 60).execute()
                for name, script in SCRIPTS.items():
                    if code == "OOM" and name == "call":
                        continue  # PEXPIRE takes no memory
                    with pytest.raises(WriteRefused, match=_answers(code)):
                        await client.register_script(script)(**_script_args(name))
            finally:
                server.accept_writes()
            assert await client.set("refusal:key", "after")
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_refused_write_is_sent_once_not_retried_on_a_new_connection(server):
    """The client tries a dead connection once more; a refusal is not one (a half-applied pipeline
    tried again would apply twice)."""
    client = _sync(server, "hiredis")
    control = server.control()
    server.refuse_writes("NOREPLICAS")
    try:
        control.config_resetstat()
        with pytest.raises(WriteRefused):
            client.set("refusal:key", "1")
        stats = control.info("commandstats")["cmdstat_set"]
        assert stats["calls"] + stats.get("rejected_calls", 0) == 1, stats
    finally:
        server.accept_writes()


def test_retrying_waits_for_redis_to_take_writes_again(server):
    client = _sync(server, "hiredis")
    server.refuse_writes("MISCONF")
    threading.Timer(0.5, server.accept_writes).start()
    started = time.monotonic()
    assert retrying(lambda: client.set("refusal:key", "1"), for_seconds=10, what="a test")
    assert 0.4 < time.monotonic() - started < 5


def test_our_clients_are_built_with_the_refusing_parsers():
    assert client_options()["parser_class"] in SYNC_PARSERS.values()
    assert client_options(asynchronous=True)["parser_class"] in ASYNC_PARSERS.values()


@pytest.mark.parametrize("parser", [*SYNC_PARSERS.values(), *ASYNC_PARSERS.values()], ids=lambda p: p.__name__)
@pytest.mark.parametrize(
    ("reply", "refused"),
    [
        *((f"{code} refused. script: abc, on @user_script:1.", True) for code in REFUSALS),  # Redis 7
        *(
            (f"ERR Error running script (call to f_abc): @user_script:1: @user_script: 1: -{code} refused", True)
            for code in REFUSALS
        ),
        *((f"@user_script: 1: -{code} refused", True) for code in REFUSALS),  # Redis 6.2, pcall + error_reply
        ("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)", True),
        ("ERR Error running script (call to f_abc): @user_script:3: user_script:3: attempt to compare nil", False),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
        ("ERR unknown command 'FOO'", False),
        ("NOSCRIPT No matching script.", False),
    ],
)
def test_the_parsers_classify_each_form_of_the_reply(parser, reply, refused):
    error = parser.parse_error(reply)
    assert isinstance(error, WriteRefused) is refused, (reply, type(error))
    if refused:
        assert str(error) == reply  # the code stays in the message, for the log
    else:
        assert not isinstance(error, redis.ConnectionError)
