"""Contract: every frame the server sends over /ws/ matches the JSON Schema of its type.

The frames come from the real code paths (consumer, worker run, stop, sweeper, resume, warming
surface), never from hand-built dicts; the schemas live in tests/support/event_schemas.py.
"""

from __future__ import annotations

import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.db import connection
from jsonschema import Draft202012Validator

from mothership.consumers import MothershipConsumer
from mothership.infra.redis import get_redis
from streams import events
from streams.eventlog import log_key
from streams.locks import lock_release
from streams.providers import ProviderError
from streams.services import stream_cancel, stream_run, stream_start, streams_sweep, tool_call_decide
from tests.support.event_schemas import SCHEMAS, SURFACE_ID, schema_errors
from tests.support.tools import demo_servers

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inline_turns(turns_not_enqueued, settings):
    """Turns run inline in the test (no worker may take them) with an instant local model."""
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 10
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0


class _FailingModel:
    """The external model edge, failing at once the way a real provider reports it."""

    name, model = "local", "failing-model"

    def __init__(self, model_id=None):
        self.model_id = model_id

    def stream(self, *, messages, stop, cache_key=None, prefix=""):
        raise ProviderError("boom")
        yield  # a generator, like every real provider


def _run_and_close(stream_id) -> None:
    try:
        stream_run(stream_id=stream_id)
    finally:
        connection.close()


def _run_turn(chat, content: str) -> str:
    turn = stream_start(chat=chat, content=content)
    stream_run(stream_id=turn.stream.id)
    return str(turn.stream.id)


def _has(frames: list[dict], type_: str, count: int = 1, **match) -> bool:
    found = [f for f in frames if f.get("type") == type_ and all(f.get(k) == v for k, v in match.items())]
    return len(found) >= count


async def _until(tab: WebsocketCommunicator, frames: list[dict], done) -> None:
    """Read frames until ``done(frames)``; a frame that never comes fails the test by timeout."""
    while not done(frames):
        frames.append(await tab.receive_json_from(timeout=5))


async def _drain(tab: WebsocketCommunicator, frames: list[dict]) -> None:
    # receive_nothing, not a receive that times out: that one cancels the consumer.
    while not await tab.receive_nothing(timeout=1):
        frames.append(await tab.receive_json_from(timeout=5))


def test_the_schemas_are_valid_and_cover_every_stream_event_type():
    # Given the event types streams/events.py defines (the channel-layer envelope never reaches a client)
    constants = {
        value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and name != "GROUP_MESSAGE_TYPE"
    }
    # Then each is a well-formed draft 2020-12 schema, and every event type has one
    for schema in SCHEMAS.values():
        Draft202012Validator.check_schema(schema)
    assert {"stream.started", "stream.replay_gap", *events.TERMINAL_TYPES} <= constants
    assert constants - set(SCHEMAS) == set()


async def test_every_frame_on_the_socket_matches_the_schema_of_its_type(
    user, workspace, chat, inline_turns, monkeypatch, settings, tmp_path
):
    # Given a tab subscribed to the workspace's tiles, the chat's stream events and its warming surface
    frames: list[dict] = []
    chat_id = str(chat.id)
    tab = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    tab.scope["user"] = user
    assert (await tab.connect())[0]
    for message in (
        {"type": "subscribe", "workspaceId": str(workspace.id)},
        {"type": "subscribe", "conversationId": chat_id},
        {"type": "subscribe", "surfaceId": SURFACE_ID, "conversationId": chat_id},
    ):
        await tab.send_json_to(message)
    await _until(tab, frames, lambda f: _has(f, "subscribed", 2) and _has(f, "surface"))

    # When a turn runs to its end (started, deltas, usage, completed, and its tiles)
    completed = await database_sync_to_async(_run_turn)(chat, "hello")
    await _until(tab, frames, lambda f: _has(f, events.COMPLETED, streamId=completed))

    # When a turn calls a tool on an MCP server (the demo server, a real child process)
    settings.MCP_SERVERS = demo_servers(tmp_path / "tools.jsonl")
    chat.tools = ["demo.*"]
    await database_sync_to_async(chat.save)(update_fields=["tools"])
    with_tool = await database_sync_to_async(_run_turn)(chat, "/tool demo.clock {}")
    await _until(tab, frames, lambda f: _has(f, events.COMPLETED, streamId=with_tool) and _has(f, events.TOOL_RESULT))

    # When a call waits for a person, who denies it (its worker in a thread of its own meanwhile)
    settings.MCP_SERVERS = demo_servers(tmp_path / "tools.jsonl", approve=True)
    waiting = await database_sync_to_async(stream_start)(chat=chat, content="/tool demo.clock {}")
    worker = threading.Thread(target=_run_and_close, args=(waiting.stream.id,))
    worker.start()
    await _until(tab, frames, lambda f: _has(f, events.TOOL_APPROVAL, streamId=str(waiting.stream.id)))
    asked = next(f for f in frames if f.get("type") == events.TOOL_APPROVAL)
    await database_sync_to_async(tool_call_decide)(chat=chat, call_id=asked["callId"], approve=False)
    await _until(tab, frames, lambda f: _has(f, events.COMPLETED, streamId=str(waiting.stream.id)))
    worker.join(10)

    # When a queued turn is stopped before any worker takes it
    queued = await database_sync_to_async(stream_start)(chat=chat, content="stop me")
    await database_sync_to_async(stream_cancel)(chat=chat, stream_id=queued.stream.id)
    await _until(tab, frames, lambda f: _has(f, events.CANCELLED, streamId=str(queued.stream.id)))

    # When a turn's lock is gone (its worker died) and the sweeper runs
    orphan = await database_sync_to_async(stream_start)(chat=chat, content="orphan")
    await database_sync_to_async(lock_release)(chat_id=chat.pk, stream_id=orphan.stream.id)
    await database_sync_to_async(streams_sweep)()
    await _until(tab, frames, lambda f: _has(f, events.INTERRUPTED, streamId=str(orphan.stream.id)))

    # When the model fails (only the external edge is replaced; the run itself is the real one)
    monkeypatch.setattr("streams.services.turn.turn.get_provider", _FailingModel)
    failed = await database_sync_to_async(_run_turn)(chat, "fail")
    await _until(tab, frames, lambda f: _has(f, events.FAILED, streamId=failed))

    # When a client resumes a finished stream whose log is no longer retained
    get_redis().delete(log_key(completed))
    await tab.send_json_to({"type": "stream.resume", "conversationId": chat_id, "streamId": completed, "afterSeq": 2})
    await _until(tab, frames, lambda f: _has(f, events.REPLAY_GAP, streamId=completed))

    # When warming is turned on, and the plumbing answers a ping, an unknown type and two unsubscribes
    await tab.send_json_to(
        {"type": "invoke", "surfaceId": SURFACE_ID, "conversationId": chat_id, "action": "set-enabled", "payload": True}
    )
    await tab.send_json_to({"type": "ping"})
    await tab.send_json_to({"type": "no.such.type"})
    await tab.send_json_to({"type": "unsubscribe", "conversationId": chat_id})
    await tab.send_json_to({"type": "unsubscribe", "surfaceId": SURFACE_ID, "conversationId": chat_id})
    await _until(
        tab,
        frames,
        lambda f: all(_has(f, t) for t in ("update", "tile.warming", "pong", "error")) and _has(f, "unsubscribed", 2),
    )
    # Stragglers (a late tile, a second update) are validated too.
    await _drain(tab, frames)
    await tab.disconnect()

    # Then every frame matches the schema of its type
    broken = [(frame, errors) for frame in frames if (errors := schema_errors(frame))]
    assert broken == [], "frames that break their schema:\n" + "\n".join(f"{f}\n  -> {e}" for f, e in broken)
    # And the types seen are exactly the types with a schema: none unexercised, none unschema'd
    assert {frame["type"] for frame in frames} == set(SCHEMAS)
