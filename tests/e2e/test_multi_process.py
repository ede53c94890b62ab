"""The same app across several processes: two web processes and two workers on one database and Redis.

A turn sent through web A is watched and stopped through web B, and the tiles on both update;
when web A dies mid-reply, its sockets reconnect to web B and resume with no gap.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets

from chats.models import Message
from tests.support import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TERMINAL = {"stream.completed", "stream.cancelled", "stream.interrupted", "stream.failed"}


@pytest.fixture
def deployment(tmp_path):
    """Web A, web B and two workers, all on a queue of their own, with long replies."""
    env = {
        "MOTHERSHIP_CELERY_QUEUE": f"multi-{uuid.uuid4().hex[:8]}",
        "MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": 100,
        "MOTHERSHIP_LOCAL_REPLY_TOKENS": 600,
    }
    procs = [processes.start_worker(tmp_path, name=f"worker-{i}", concurrency=4, **env) for i in (1, 2)]
    web_a, url_a = processes.start_server(tmp_path, name="web-a", **env)
    web_b, url_b = processes.start_server(tmp_path, name="web-b", **env)
    procs += [web_a, web_b]
    yield {"a": (web_a, url_a), "b": (web_b, url_b)}
    for proc in procs:
        proc.stop()


async def _socket(url: str, token: str, *messages: dict):
    ws = await websockets.connect(url.replace("http", "ws", 1) + f"/ws/?token={token}", close_timeout=0.2)
    for message in messages:
        await ws.send(json.dumps(message))
        while (await _next(ws))["type"] != "subscribed":
            pass
    return ws


async def _next(ws, timeout: float = 15) -> dict:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert frame["type"] != "error", frame
    return frame


async def _tile_until(ws, chat_id: str, state: str) -> dict:
    while True:
        frame = await _next(ws)
        if frame["type"] == "tile" and frame["conversationId"] == chat_id and frame["state"] == state:
            return frame


async def test_a_turn_sent_through_one_web_process_is_watched_and_stopped_through_another(deployment, token, chat):
    (_, url_a), (_, url_b) = deployment["a"], deployment["b"]
    chat_id, workspace_id = str(chat.id), str(chat.workspace_id)
    headers = {"Authorization": f"Token {token}"}
    tiles_a = await _socket(url_a, token, {"type": "subscribe", "workspaceId": workspace_id})
    tiles_b = await _socket(url_b, token, {"type": "subscribe", "workspaceId": workspace_id})
    watch_b = await _socket(url_b, token, {"type": "subscribe", "conversationId": chat_id})
    async with httpx.AsyncClient(headers=headers, timeout=15) as http:
        sent = await http.post(f"{url_a}/api/mothership/chats/{chat_id}/messages", json={"content": "across processes"})
        assert sent.status_code == 201, sent.text
        stream_id = sent.json()["stream_id"]
        for tiles in (tiles_a, tiles_b):  # yellow on both web processes' dashboards
            assert (await _tile_until(tiles, chat_id, "streaming"))["activeStreamId"] == stream_id

        seen = []
        while len([e for e in seen if e["type"] == "stream.delta"]) < 3:
            seen.append(await _next(watch_b))
        stopped = await http.post(f"{url_b}/api/mothership/chats/{chat_id}/cancel", json={"stream_id": stream_id})
        assert stopped.json()["cancelled"] is True, stopped.text
        while seen[-1]["type"] not in TERMINAL:
            seen.append(await _next(watch_b))

    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert {e["streamId"] for e in seen} == {stream_id}
    assert seen[-1]["type"] == "stream.cancelled"
    for tiles in (tiles_a, tiles_b):
        assert (await _tile_until(tiles, chat_id, "cancelled"))["activeStreamId"] is None
    saved = await Message.objects.filter(stream_id=stream_id, role="assistant").afirst()
    assert saved.status == "cancelled" and saved.content == "".join(e.get("text", "") for e in seen)
    for ws in (tiles_a, tiles_b, watch_b):
        await ws.close()


async def test_sockets_of_a_web_process_that_dies_resume_on_another_with_no_gap(deployment, token, chat):
    (web_a, url_a), (_, url_b) = deployment["a"], deployment["b"]
    chat_id = str(chat.id)
    on_a = await _socket(url_a, token, {"type": "subscribe", "conversationId": chat_id})
    async with httpx.AsyncClient(headers={"Authorization": f"Token {token}"}, timeout=15) as http:
        sent = await http.post(f"{url_a}/api/mothership/chats/{chat_id}/messages", json={"content": "survive a web crash"})
        stream_id = sent.json()["stream_id"]
    received = []
    while len(received) < 5:
        frame = await _next(on_a)
        if frame.get("streamId") == stream_id:
            received.append(frame)
    web_a.kill9()  # mid-reply: the socket drops with frames possibly in flight

    on_b = await _socket(url_b, token)
    await on_b.send(
        json.dumps(
            {
                "type": "stream.resume",
                "conversationId": chat_id,
                "streamId": stream_id,
                "afterSeq": received[-1]["seq"],
            }
        )
    )
    while not received or received[-1]["type"] not in TERMINAL:
        frame = await _next(on_b)
        if frame.get("streamId") == stream_id:
            received.append(frame)
    await on_b.close()

    assert [e["seq"] for e in received] == list(range(1, len(received) + 1)), "a gap or a duplicate"
    assert received[-1]["type"] == "stream.completed"
    saved = await Message.objects.filter(stream_id=stream_id, role="assistant").afirst()
    assert saved.content == "".join(e.get("text", "") for e in received)
    assert len(saved.content.split()) == 600
