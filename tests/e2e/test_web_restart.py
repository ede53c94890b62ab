"""The web server killed (kill -9) while 20 sockets stream, and started again: every client
reconnects with back-off and resumes from its last seq; all 20 transcripts are complete."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
import websockets
from channels.db import database_sync_to_async

from chats import services as chat_services
from chats.models import Message
from streams.models import Stream
from streams.providers.local import LocalProvider
from tests.support import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CLIENTS, TOKENS = 20, 120  # at 20 tokens/s: 6 s replies


@pytest.fixture
def slow_turns(tmp_path):
    worker = processes.start_worker_on_own_queue(
        tmp_path,
        name="webrestart",
        concurrency=CLIENTS,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=20,
        MOTHERSHIP_LOCAL_REPLY_TOKENS=TOKENS,
    )
    yield worker
    worker.stop()


async def _client(url: str, chat_id: str, stream_id: str, seen_first: asyncio.Event, reconnects: list) -> list[dict]:
    """What the page does: follow the stream; when the socket drops, reconnect with back-off and resume."""
    events: list[dict] = []
    delay = 0.1
    while True:
        try:
            async with websockets.connect(url, open_timeout=2) as socket:
                after = events[-1]["seq"] if events else 0
                await socket.send(
                    json.dumps({"type": "stream.resume", "conversationId": chat_id, "streamId": stream_id, "afterSeq": after})
                )
                delay = 0.1
                async for raw in socket:
                    event = json.loads(raw)
                    if event.get("streamId") != stream_id or not event["type"].startswith("stream."):
                        continue
                    events.append(event)
                    seen_first.set()
                    if event["type"] == "stream.completed":
                        return events
        except (OSError, websockets.WebSocketException):
            reconnects.append(chat_id)
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(2.0, delay * 2)


async def test_every_socket_reconnects_and_resumes_after_the_web_server_is_killed(slow_turns, api, workspace, token, tmp_path):
    port = processes.free_port()
    web, base = processes.start_server(tmp_path, port=port, name="web-1")
    url = base.replace("http", "ws") + f"/ws/?token={token}"

    def send_all():
        chats = [chat_services.chat_create(workspace=workspace, title=f"restart {i}") for i in range(CLIENTS)]
        with processes.routed_to(slow_turns.queue):
            sent = [
                api.post(f"/api/mothership/chats/{c.id}/messages", {"content": f"tell {i}"}, format="json")
                for i, c in enumerate(chats)
            ]
        return [(str(c.id), r.json()["stream_id"]) for c, r in zip(chats, sent, strict=True)]

    turns = await database_sync_to_async(send_all)()
    firsts = [asyncio.Event() for _ in turns]
    reconnects: list = []
    clients = [asyncio.create_task(_client(url, c, s, first, reconnects)) for (c, s), first in zip(turns, firsts, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(first.wait() for first in firsts)), 20)

    web.kill9()  # every socket drops mid-reply
    await asyncio.sleep(1.0)
    web, _ = await asyncio.to_thread(processes.start_server, tmp_path, port=port, name="web-2")
    try:
        transcripts = await asyncio.wait_for(asyncio.gather(*clients), 60)
    finally:
        web.stop()

    assert len(set(reconnects)) == CLIENTS  # every client lost its socket and came back
    for (chat_id, stream_id), events in zip(turns, transcripts, strict=True):
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), chat_id  # no gap, no duplicate
        stream = await database_sync_to_async(Stream.objects.get)(pk=stream_id)
        message = await database_sync_to_async(Message.objects.get)(pk=stream.assistant_message_id)
        text = "".join(e.get("text", "") for e in events if e["type"] == "stream.delta")
        assert stream.status == "completed" and text == message.content and len(text) > 0
    expected = "".join(LocalProvider(tokens_per_second=0, reply_tokens=TOKENS).reply_for([{"role": "user", "content": "tell 0"}]))
    assert "".join(e.get("text", "") for e in transcripts[0] if e["type"] == "stream.delta") == expected
