"""Redis dies in the middle of a reply and comes back within seconds, with its data (from its
append-only file, as the embedded Redis keeps it) or empty: the reply completes, and a socket
that resumes afterwards assembles exactly the saved text, with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import pytest
import redis
from celery import Task
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator

from chats.models import Message
from mothership.celery import app as celery_app
from mothership.consumers import MothershipConsumer
from mothership.infra import redis as redis_client
from streams import eventlog, locks
from streams import events as stream_events
from streams.models import Stream
from streams.providers.local import LocalProvider
from streams.services import stream_start
from streams.tasks import run_stream
from tests.support import processes
from tests.support.redis_server import PrivateRedis
from tests.support.tools import demo_entry, demo_records
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TOKENS = 160  # at 20 tokens/s: an 8 s reply
TERMINALS = {"stream.completed", "stream.cancelled", "stream.interrupted", "stream.failed"}


@contextlib.contextmanager
def _private_redis(settings, *, persist: bool):
    """A Redis of its own for the app's locks, logs, queue and channel layer, to kill and restart."""
    server = PrivateRedis(persist=persist)
    settings.REDIS_URL = server.url
    settings.CHANNEL_LAYERS = {  # this process's sockets hear the worker's events through it too
        "default": {
            **settings.CHANNEL_LAYERS["default"],
            "CONFIG": {
                **settings.CHANNEL_LAYERS["default"]["CONFIG"],
                "hosts": [{"address": server.url, "socket_timeout": None}],
            },
        }
    }
    redis_client.reset_clients()
    try:
        yield server
    finally:
        server.close()
        redis_client.reset_clients()


@contextlib.contextmanager
def _private_stack(settings, tmp_path, *, persist: bool, ttl: float, concurrency: int = 8, **env):
    """A private Redis, a worker on it (with ``env``), and a way to kill and restart it."""
    with _private_redis(settings, persist=persist) as server:
        worker = processes.start_worker_on_own_queue(
            tmp_path,
            name="restart",
            queues="turns",
            concurrency=concurrency,
            REDIS_URL=server.url,
            MOTHERSHIP_STREAM_HEARTBEAT=1,
            MOTHERSHIP_STREAM_LOCK_TTL=ttl,
            MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=20,
            MOTHERSHIP_LOCAL_REPLY_TOKENS=TOKENS,
            **env,
        )
        server.queue, server.worker = worker.queue, worker
        try:
            yield server
        finally:
            worker.stop()


@pytest.fixture(params=["data kept", "restarted empty"])
def outage(request, settings, tmp_path):
    with _private_stack(settings, tmp_path, persist=request.param == "data kept", ttl=10) as server:
        yield server


@pytest.fixture(params=["data kept", "restarted empty"])
def long_outage(request, settings, tmp_path):
    """As ``outage``, with a lock TTL (3 s) shorter than the outage the test makes."""
    with _private_stack(settings, tmp_path, persist=request.param == "data kept", ttl=3) as server:
        yield server


def _enqueue(server: PrivateRedis, stream_id: str) -> None:
    """The turn's task, as Celery writes it, onto the worker's queue in the private Redis."""
    scratch = f"scratch-{uuid.uuid4().hex[:8]}"
    session = redis.Redis.from_url(celery_app.conf.broker_url)  # the suite's broker, not the private server
    Task.apply_async(run_stream, args=[stream_id], task_id=stream_id, queue=scratch)  # (turns_not_enqueued patched the bound one)
    (message,) = session.lrange(scratch, 0, -1)
    session.delete(scratch)
    redis.Redis.from_url(server.url).lpush(server.queue, message)


async def _follow(user, chat, stream_id: str, *, timeout: float = 10) -> list[dict]:
    """A socket that resumes the stream from its start and reads it to its terminal event."""
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await communicator.send_json_to(
        {"type": "stream.resume", "conversationId": str(chat.id), "streamId": stream_id, "afterSeq": 0}
    )
    events = []
    try:
        while not events or events[-1]["type"] not in TERMINALS:
            event = await communicator.receive_json_from(timeout=timeout)
            if event["type"].startswith("stream."):
                events.append(event)
    finally:
        await communicator.disconnect()
    return events


def _assert_gapless(events: list[dict], text: str) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gap, no duplicate
    assert "".join(e.get("text", "") for e in events if e["type"] == "stream.delta") == text


def _reply(content: str) -> str:
    return "".join(LocalProvider(tokens_per_second=0, reply_tokens=TOKENS).reply_for([{"role": "user", "content": content}]))


def _sealed(stream_id: str) -> Stream | None:
    return Stream.objects.filter(pk=stream_id).exclude(status__in=Stream.LIVE_STATUSES).first()


async def _streaming_with_a_socket(server: PrivateRedis, user, chat) -> tuple[str, asyncio.Task]:
    """A turn 20 events into its reply on the server's worker, a socket following it that stays
    connected through what comes next, and a second for the append-only file to catch up."""
    turn = await database_sync_to_async(stream_start)(chat=chat, content="keep going")
    stream_id = str(turn.stream.id)
    live = asyncio.create_task(_follow(user, chat, stream_id, timeout=40))
    _enqueue(server, stream_id)
    await database_sync_to_async(wait_for)(lambda: len(eventlog.read(stream_id)) > 20, 20, "20 events in the log")
    await asyncio.sleep(1.2)  # what the append-only file holds is at most a second old
    return stream_id, live


async def test_a_reply_in_flight_when_redis_restarts_completes_with_every_character(outage, turns_not_enqueued, user, chat):
    stream_id, live = await _streaming_with_a_socket(outage, user, chat)
    await asyncio.to_thread(outage.stop)
    await asyncio.sleep(3)
    await asyncio.to_thread(outage.start)

    stream = await database_sync_to_async(wait_for)(lambda: _sealed(stream_id), 40, "the seal")
    message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
    log = outage.worker.output()[-3000:]
    assert (stream.status, message.status, message.content) == ("completed", "complete", _reply("keep going")), log

    # The socket that stayed connected caught up once the layer had Redis again; one that resumes
    # afterwards gets the same: every event once, in order, and exactly the saved text.
    _assert_gapless(await asyncio.wait_for(live, 20), message.content)
    _assert_gapless(await _follow(user, chat, stream_id), message.content)
    assert locks.lock_owner(chat_id=chat.id) is None
    # What the operator reads: one line when Redis goes, one when it is back (as the README says).
    output = outage.worker.output()
    assert output.count(f"redis unavailable during stream {stream_id}") == 1, output[-3000:]
    assert output.count(f"redis back for stream {stream_id}") == 1


@pytest.fixture
def instant_outage(settings, tmp_path):
    with _private_stack(settings, tmp_path, persist=False, ttl=10) as server:
        yield server


async def test_a_reply_whose_redis_restarts_empty_between_two_frames_completes(instant_outage, turns_not_enqueued, user, chat):
    """Redis killed and back empty at once: no append failed meanwhile, so the first one after it
    finds the lock gone. Nobody else holds it: the turn takes it again and goes on (it used to be
    fenced, ``interrupted / lock_lost``)."""
    stream_id, live = await _streaming_with_a_socket(instant_outage, user, chat)
    await asyncio.to_thread(instant_outage.stop)
    await asyncio.to_thread(instant_outage.start)

    stream = await database_sync_to_async(wait_for)(lambda: _sealed(stream_id), 40, "the seal")
    message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
    log = instant_outage.worker.output()[-3000:]
    assert (stream.status, message.status, message.content) == ("completed", "complete", _reply("keep going")), log
    _assert_gapless(await _follow(user, chat, stream_id), message.content)
    assert locks.lock_owner(chat_id=chat.id) is None


async def test_a_reply_whose_redis_stays_away_longer_than_the_lock_ttl_is_sealed_with_all_its_text(
    long_outage, turns_not_enqueued, user, chat
):
    stream_id, live = await _streaming_with_a_socket(long_outage, user, chat)
    shown = eventlog.snapshot_text(eventlog.read(stream_id))
    await asyncio.to_thread(long_outage.stop)
    down_at = time.monotonic()

    # Redis is still away: the turn is sealed in the database all the same, with a clear reason
    # and every character the worker received (more than the sockets were shown before the outage).
    stream = await database_sync_to_async(wait_for)(lambda: _sealed(stream_id), 15, "the seal")
    sealed_after = time.monotonic() - down_at
    message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
    chat_row = await database_sync_to_async(type(chat).objects.get)(pk=chat.pk)
    log = long_outage.worker.output()[-3000:]
    assert (stream.status, stream.reason, message.status) == ("interrupted", "redis_unavailable", "interrupted"), log
    assert message.content.startswith(shown) and len(message.content) > len(shown), log
    assert _reply("keep going").startswith(message.content)
    assert chat_row.active_stream_id is None  # the tile is no longer "streaming", even before Redis is back
    await asyncio.sleep(max(0.0, 6 - (time.monotonic() - down_at)))  # 6 s away: twice the TTL
    await asyncio.to_thread(long_outage.start)
    back_at = time.monotonic()

    # Once Redis is back: the terminal event, after every event the log lacked, reaches the socket
    # that stayed connected and one that resumes; the lock is freed.
    events = await asyncio.wait_for(live, 20)
    caught_up = time.monotonic() - back_at
    _assert_gapless(events, message.content)
    assert events[-1]["type"] == "stream.interrupted" and events[-1]["seq"] == stream.last_seq
    assert events[-1]["reason"] == "redis_unavailable"
    _assert_gapless(await _follow(user, chat, stream_id), message.content)
    await database_sync_to_async(wait_for)(lambda: locks.lock_owner(chat_id=chat.id) is None, 5, "the lock freed")
    print(
        f"sealed {sealed_after:.1f} s after Redis went away (TTL 3 s); the socket had the terminal {caught_up:.2f} s after it was back"
    )

    # And the next turn streams and completes at once (a short one: its words, echoed).
    await _next_turn_completes(long_outage, chat)


async def test_a_socket_gets_the_last_event_published_while_its_channel_layer_reconnected(
    settings, turns_not_enqueued, user, chat
):
    """The live path alone would never deliver it: no later event reveals the hole."""
    with _private_redis(settings, persist=False) as server:
        turn = await database_sync_to_async(stream_start)(chat=chat, content="hello")
        stream_id, chat_id = str(turn.stream.id), chat.id

        def event(type: str, seq: int, **fields) -> dict:
            return stream_events.stream_event(type=type, chat_id=chat_id, stream_id=stream_id, seq=seq, **fields)

        eventlog.append(chat_id=chat_id, stream_id=stream_id, event=event("stream.delta", 1, text="Hi"))
        communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
        communicator.scope["user"] = user
        assert (await communicator.connect())[0]
        await communicator.send_json_to(
            {"type": "stream.resume", "conversationId": str(chat_id), "streamId": stream_id, "afterSeq": 0}
        )
        assert (await communicator.receive_json_from(timeout=5))["seq"] == 1

        # Without yielding to the event loop: the layer cannot re-subscribe before the terminal
        # event is published into the restarted (empty) Redis.
        server.stop()
        server.start()
        terminal = event("stream.completed", 2, message_id=str(turn.assistant_message.id), partial=False, reason=None)
        eventlog.append(chat_id=chat_id, stream_id=stream_id, event=terminal, fenced=False)

        assert await communicator.receive_json_from(timeout=10) == terminal
        await communicator.disconnect()


async def test_a_turn_waiting_in_the_queue_when_redis_restarts_empty_still_runs(
    settings, tmp_path, turns_not_enqueued, user, workspace
):
    """The queue went with the data: the sweeper (beat and a background worker, as ``make run``
    starts them) leaves the streaming turn to its worker, queues the waiting one again, and both
    complete."""
    from tests import factories

    with _private_stack(settings, tmp_path, persist=False, ttl=10, concurrency=1) as server:
        env = {"REDIS_URL": server.url, "MOTHERSHIP_CELERY_QUEUE": server.queue, "MOTHERSHIP_SWEEP_INTERVAL": 0.5}
        background = processes.start_worker(tmp_path, name="sweeper", queues="background", **env)
        beat = processes.start_beat(tmp_path, **env)
        try:
            chats = [await database_sync_to_async(factories.ChatFactory)(workspace=workspace) for _ in range(2)]
            streaming = await database_sync_to_async(stream_start)(chat=chats[0], content="first")
            waiting = await database_sync_to_async(stream_start)(chat=chats[1], content="/echo the second, short")
            for turn in (streaming, waiting):
                _enqueue(server, str(turn.stream.id))  # one worker thread: the second waits in the queue
            await database_sync_to_async(wait_for)(lambda: len(eventlog.read(streaming.stream.id)) > 20, 20, "20 events")
            assert (await database_sync_to_async(Stream.objects.get)(pk=waiting.stream.id)).status == "queued"

            await asyncio.to_thread(server.stop)
            await asyncio.sleep(2)
            await asyncio.to_thread(server.start)

            for turn, reply, chat in ((streaming, _reply("first"), chats[0]), (waiting, "the second, short", chats[1])):
                stream = await database_sync_to_async(wait_for)(lambda t=turn: _sealed(str(t.stream.id)), 40, "the seal")
                message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
                logs = server.worker.output()[-2000:] + background.output()[-2000:]
                assert (stream.status, message.content) == ("completed", reply), logs
                _assert_gapless(await _follow(user, chat, str(turn.stream.id)), message.content)
            assert "queued again" in background.output()
        finally:
            beat.stop()
            background.stop()


@pytest.fixture(params=["data kept", "restarted empty"])
def tool_outage(request, settings, tmp_path):
    """As ``outage``, with the demo tool server (a child of the worker) recording its calls."""
    log = tmp_path / "tools.jsonl"
    servers = json.dumps([demo_entry(log)])
    with _private_stack(settings, tmp_path, persist=request.param == "data kept", ttl=10, MCP_SERVERS=servers) as server:
        server.tool_log = log
        yield server


async def test_a_tool_call_in_flight_when_redis_restarts_completes_and_resumes_gapless(
    tool_outage, turns_not_enqueued, user, chat
):
    chat.tools = ["demo.*"]
    await database_sync_to_async(chat.save)(update_fields=["tools"])
    turn = await database_sync_to_async(stream_start)(chat=chat, content='/tool demo.sleep {"seconds": 6, "label": "outage"}')
    stream_id = str(turn.stream.id)
    live = asyncio.create_task(_follow(user, chat, stream_id, timeout=40))
    _enqueue(tool_outage, stream_id)
    started = lambda: any(r.get("label") == "outage" for r in demo_records(tool_outage.tool_log))  # noqa: E731
    await database_sync_to_async(wait_for)(started, 20, "the server to start the call")
    await asyncio.sleep(1.2)  # the append-only file holds the call's event

    await asyncio.to_thread(tool_outage.stop)  # Redis away while the tool runs
    await asyncio.sleep(3)
    await asyncio.to_thread(tool_outage.start)

    stream = await database_sync_to_async(wait_for)(lambda: _sealed(stream_id), 40, "the seal")
    message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
    output = tool_outage.worker.output()[-3000:]
    assert (stream.status, message.status) == ("completed", "complete"), output
    assert [(c["tool"], c["status"]) for c in message.tool_calls] == [("demo.sleep", "ok")], output
    assert [r["event"] for r in demo_records(tool_outage.tool_log)] == ["started", "finished"]
    # Every tab sees the call and its result once, in order, with the reply's text.
    for events in (await asyncio.wait_for(live, 20), await _follow(user, chat, stream_id)):
        _assert_gapless(events, message.content)
        types = [e["type"] for e in events]
        assert types.count("stream.tool_call") == 1 and types.count("stream.tool_result") == 1
        assert types.index("stream.tool_call") < types.index("stream.tool_result")


async def test_a_reply_whose_model_ends_while_redis_is_away_is_sealed_completed_at_once(outage, turns_not_enqueued, user, chat):
    """The database is up: the turn is sealed ``completed``, with its whole text and usage, as soon
    as the model ends (the lock's TTL is 10 s, the outage longer than what is left of the reply);
    the log and the sockets get the rest when Redis is back."""
    from mothership.selectors import chat_views_by_id

    stream_id, live = await _streaming_with_a_socket(outage, user, chat)
    await asyncio.to_thread(outage.stop)
    down_at = time.monotonic()

    stream = await database_sync_to_async(wait_for)(lambda: _sealed(stream_id), 15, "the seal")
    sealed_after = time.monotonic() - down_at
    message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
    log = outage.worker.output()[-3000:]
    assert (stream.status, stream.reason, message.status) == ("completed", "", "complete"), log
    assert message.content == _reply("keep going") and message.output_tokens == TOKENS, log
    # The model's last token was due (TOKENS - 1) / 20 s after its first (the local model keeps time).
    model_ended_at = stream.first_delta_at.timestamp() + (TOKENS - 1) / 20
    seal_lag = stream.finished_at.timestamp() - model_ended_at
    assert seal_lag < 1.0, (seal_lag, log)
    (view,) = await database_sync_to_async(chat_views_by_id)([chat.id])
    assert (view.state, view.active_stream_id) == ("idle", None)  # the tile: not "streaming", Redis still away
    await asyncio.sleep(1)
    await asyncio.to_thread(outage.start)
    back_at = time.monotonic()

    # Redis back: the rest of the reply and the terminal event reach the socket that stayed
    # connected and one that resumes, gapless; the lock is freed.
    events = await asyncio.wait_for(live, 20)
    caught_up = time.monotonic() - back_at
    _assert_gapless(events, message.content)
    assert events[-1]["type"] == "stream.completed" and events[-1]["seq"] == stream.last_seq
    assert [e["type"] for e in events].count("stream.usage") == 1
    _assert_gapless(await _follow(user, chat, stream_id), message.content)
    await database_sync_to_async(wait_for)(lambda: locks.lock_owner(chat_id=chat.id) is None, 5, "the lock freed")
    print(
        f"sealed completed {seal_lag * 1000:.0f} ms after the model ended ({sealed_after:.1f} s after Redis went away);"
        f" the socket had the terminal {caught_up:.2f} s after Redis was back"
    )


@pytest.fixture(params=["MISCONF", "NOREPLICAS", "READONLY"])
def refusal(request, settings, tmp_path):
    """A Redis that refuses writes for a while (a full disk, too few replicas, a failover), TTL 10 s."""
    with _private_stack(settings, tmp_path, persist=False, ttl=10) as server:
        server.code = request.param
        yield server


async def _next_turn_completes(server: PrivateRedis, chat) -> None:
    again = await database_sync_to_async(stream_start)(chat=chat, content="/echo and again")
    _enqueue(server, str(again.stream.id))
    try:
        done = await database_sync_to_async(wait_for)(
            lambda: Stream.objects.filter(pk=again.stream.id, status="completed").first(), 20, "the next turn"
        )
    except AssertionError:
        raise AssertionError(server.worker.output()[-4000:]) from None
    assert (await database_sync_to_async(Message.objects.get)(pk=done.assistant_message_id)).content == "and again"


async def test_a_reply_in_flight_while_redis_refuses_writes_completes(refusal, turns_not_enqueued, user, chat):
    stream_id, live = await _streaming_with_a_socket(refusal, user, chat)
    await asyncio.to_thread(refusal.refuse_writes, refusal.code)
    await asyncio.sleep(3)
    await asyncio.to_thread(refusal.accept_writes)
    back_at = time.monotonic()

    stream = await database_sync_to_async(wait_for)(lambda: _sealed(stream_id), 40, "the seal")
    message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
    log = refusal.worker.output()[-3000:]
    assert (stream.status, message.status, message.content) == ("completed", "complete", _reply("keep going")), log
    assert refusal.code in log  # the worker says why it waited
    events = await asyncio.wait_for(live, 20)
    _assert_gapless(events, message.content)
    assert events[-1]["type"] == "stream.completed"
    _assert_gapless(await _follow(user, chat, stream_id), message.content)
    assert locks.lock_owner(chat_id=chat.id) is None
    print(f"{refusal.code}: sealed completed {time.monotonic() - back_at:.1f} s after Redis took writes again")
    await _next_turn_completes(refusal, chat)


async def test_a_reply_whose_redis_refuses_writes_longer_than_the_lock_ttl_is_sealed_and_announced(
    settings, tmp_path, turns_not_enqueued, user, chat
):
    """Refused for 6 s, twice the TTL: sealed ``interrupted / redis_unavailable`` with its text while
    Redis still refuses; once it takes writes, the terminal event reaches the socket and the lock goes."""
    with _private_stack(settings, tmp_path, persist=False, ttl=3) as server:
        stream_id, live = await _streaming_with_a_socket(server, user, chat)
        await asyncio.to_thread(server.refuse_writes, "NOREPLICAS")
        refused_at = time.monotonic()
        stream = await database_sync_to_async(wait_for)(lambda: _sealed(stream_id), 15, "the seal")
        sealed_after = time.monotonic() - refused_at
        message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
        log = server.worker.output()[-3000:]
        assert (stream.status, stream.reason) == ("interrupted", "redis_unavailable"), log
        assert message.content and _reply("keep going").startswith(message.content)
        await asyncio.sleep(max(0.0, 6 - (time.monotonic() - refused_at)))
        await asyncio.to_thread(server.accept_writes)
        back_at = time.monotonic()

        events = await asyncio.wait_for(live, 20)
        caught_up = time.monotonic() - back_at
        _assert_gapless(events, message.content)
        assert events[-1]["type"] == "stream.interrupted" and events[-1]["reason"] == "redis_unavailable"
        await database_sync_to_async(wait_for)(lambda: locks.lock_owner(chat_id=chat.id) is None, 5, "the lock freed")
        print(f"sealed {sealed_after:.1f} s after the refusals began (TTL 3 s); the terminal {caught_up:.2f} s after they ended")
        await _next_turn_completes(server, chat)
