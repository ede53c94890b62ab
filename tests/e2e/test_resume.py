"""Resume property: whatever the disconnect points, the reassembled text has no gap and no duplicate."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async

from streams.services import stream_start
from tests.support import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

STREAMS = 5
DISCONNECTS_PER_STREAM = 45
TERMINAL = {"stream.completed", "stream.cancelled", "stream.interrupted", "stream.failed"}


@pytest.fixture
def long_stream_worker(tmp_path):
    queue = f"resume-{uuid.uuid4().hex[:8]}"
    proc = processes.start_worker(
        tmp_path,
        name="resume",
        MOTHERSHIP_CELERY_QUEUE=queue,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=250,
        MOTHERSHIP_LOCAL_REPLY_TOKENS=300,
        MOTHERSHIP_DELTA_FLUSH_MS=0,
    )
    proc.queue = queue
    yield proc
    proc.stop()


async def follow(ws_url: str, chat_id: str, stream_id: str, rng: random.Random, budget: int) -> tuple[list[dict], int]:
    """Read the stream, dropping the socket at random points and resuming from the last seq seen."""
    received, last, disconnects = [], 0, 0
    while True:
        async with websockets.connect(ws_url, close_timeout=0.2) as socket:
            await socket.send(
                json.dumps({"type": "stream.resume", "conversationId": chat_id, "streamId": stream_id, "afterSeq": last})
            )
            take = rng.randint(0, 10) if disconnects < budget else 10**9
            for _ in range(take):
                try:
                    event = json.loads(await asyncio.wait_for(socket.recv(), 10))
                except TimeoutError:
                    raise AssertionError(f"no event after seq {last} ({disconnects} disconnects so far, take {take})") from None
                assert event["type"] != "error", event
                assert event["seq"] == last + 1, f"gap or duplicate: got {event['seq']} after {last}"
                received.append(event)
                last = event["seq"]
                if event["type"] in TERMINAL:
                    return received, disconnects
        disconnects += 1  # the socket is dropped here, possibly with frames in flight


async def test_two_hundred_random_disconnect_points(long_stream_worker, live_server_url, token, chat):
    ws_url = live_server_url.replace("http", "ws") + f"/ws/?token={token}"
    headers = {"Authorization": f"Token {token}"}
    rng = random.Random(20261122)
    total_disconnects = 0
    async with httpx.AsyncClient(base_url=live_server_url, headers=headers, timeout=10) as http:
        for i in range(STREAMS):
            # Started here (not through the server) so the turn goes to this test's long-stream worker.
            with processes.routed_to(long_stream_worker.queue):
                turn = await database_sync_to_async(stream_start)(chat=chat, content=f"resume {i}")
            events, disconnects = await follow(ws_url, str(chat.id), str(turn.stream.id), rng, DISCONNECTS_PER_STREAM)
            total_disconnects += disconnects
            assert events[-1]["type"] == "stream.completed"
            text = "".join(e.get("text", "") for e in events if e["type"] == "stream.delta")
            detail = (await http.get(f"/api/mothership/chats/{chat.id}")).json()
            assert detail["messages"][-1]["id"] == str(turn.assistant_message.id)
            assert detail["messages"][-1]["content"] == text and len(text.split()) == 300
    assert total_disconnects >= 200
