"""Tool calls, end to end: Stop mid-call, and what a call costs beyond the tool's own time.

Starts a real uvicorn server and a real Celery worker whose MCP_SERVERS is the demo server
(``mothership/demo_tools.py``, a child of the worker over stdio), and one socket client.

- Stop mid-call: for each of --stops turns, ``/tool demo.sleep {"seconds": 60}``; once its
  ``stream.tool_call`` is at the socket and the server has started the call, POST the cancel and
  time until ``stream.cancelled`` arrives at the socket. Every stop must reach the server (its
  own record says the handler was cancelled).
- Overhead: --turns turns at once, each ``/tool demo.sleep {"seconds": S}``; per call, from the
  server's record of the call's end to its ``stream.tool_result`` at the socket (the way back:
  server → worker → log → web → socket), and how late the socket saw its ``stream.tool_call``
  after the server had started the call (the way out is at most that; the burst's sends load the
  web process then).

Usage: .venv/bin/python bench/tools.py [--stops 50] [--turns 50] [--sleep 0.2]
Uses DATABASE_URL / REDIS_URL when set (embedded defaults otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import percentile, setup_django

setup_django()

import django  # noqa: E402  (set up above)
import httpx  # noqa: E402
import websockets  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from chats import services  # noqa: E402
from chats.models import Chat  # noqa: E402
from tests.support import processes  # noqa: E402
from tests.support.tools import demo_entry, demo_records  # noqa: E402


async def _socket(base: str, token: str, chat_ids: list[str]):
    socket = await websockets.connect(base.replace("http", "ws", 1) + f"/ws/?token={token}", close_timeout=0.2, max_size=None)
    for chat_id in chat_ids:
        await socket.send(json.dumps({"type": "subscribe", "conversationId": chat_id}))
        while json.loads(await socket.recv())["type"] != "subscribed":
            pass
    return socket


async def stops(base: str, token: str, chat_id: str, count: int, log: Path) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
        socket = await _socket(base, token, [chat_id])
        for i in range(count):
            label = f"stop-{i}"
            body = {"content": f'/tool demo.sleep {{"seconds": 60, "label": "{label}"}}'}
            stream_id = (await client.post(f"/api/mothership/chats/{chat_id}/messages", json=body)).json()["stream_id"]
            while not ((e := json.loads(await socket.recv())).get("streamId") == stream_id and e["type"] == "stream.tool_call"):
                pass
            while not any(r["label"] == label for r in demo_records(log)):  # the server has the call
                await asyncio.sleep(0.005)
            t0 = time.perf_counter()
            answer = asyncio.create_task(client.post(f"/api/mothership/chats/{chat_id}/cancel", json={"stream_id": stream_id}))
            while not ((e := json.loads(await socket.recv())).get("streamId") == stream_id and e["type"] == "stream.cancelled"):
                pass
            latencies.append(time.perf_counter() - t0)
            assert (await answer).json()["cancelled"] is True
        await socket.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        cancelled = {r["label"] for r in demo_records(log) if r["event"] == "cancelled"}
        if all(f"stop-{i}" in cancelled for i in range(count)):
            break
        await asyncio.sleep(0.1)
    missing = [i for i in range(count) if f"stop-{i}" not in cancelled]
    assert not missing, f"stops that never reached the server: {missing}"
    return latencies


async def overhead(base: str, token: str, chat_ids: list[str], seconds: float, log: Path) -> list[float]:
    socket = await _socket(base, token, chat_ids)
    labels = {chat_id: f"load-{uuid.uuid4().hex[:8]}" for chat_id in chat_ids}
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=60) as client:
        await asyncio.gather(
            *(
                client.post(
                    f"/api/mothership/chats/{chat_id}/messages",
                    json={"content": f'/tool demo.sleep {{"seconds": {seconds}, "label": "{labels[chat_id]}"}}'},
                )
                for chat_id in chat_ids
            )
        )
    called, answered, done = {}, {}, set()
    timeline: dict[str, list] = {}  # chat id → (time at the socket, event type) of each of its events
    while len(done) < len(chat_ids):
        event = json.loads(await socket.recv())
        now = time.time()
        chat_id = event.get("conversationId")
        timeline.setdefault(chat_id, []).append((now, event.get("type")))
        if event.get("type") == "stream.tool_call":
            called[chat_id] = now
        elif event.get("type") == "stream.tool_result":
            answered[chat_id] = now
        elif event.get("type") == "stream.completed":
            done.add(chat_id)
    await socket.close()
    records = demo_records(log)
    back, seen_late = [], []
    for chat_id, label in labels.items():
        start = next(r["at"] for r in records if r["label"] == label and r["event"] == "started")
        end = next(r["at"] for r in records if r["label"] == label and r["event"] == "finished")
        back.append(answered[chat_id] - end)
        seen_late.append(called[chat_id] - start)
    if len(chat_ids) > 1:  # where the slowest call's time went: its events at the socket, and its server's record
        worst = max(
            labels,
            key=lambda c: answered[c] - next(r["at"] for r in records if r["label"] == labels[c] and r["event"] == "finished"),
        )
        marks = [(r["at"], f"server: {r['event']}") for r in records if r["label"] == labels[worst]]
        first = min(t for t, _ in timeline[worst] + marks)
        print("slowest call's timeline (ms from its first mark):")
        for at, what in sorted(timeline[worst] + marks):
            print(f"  {1000 * (at - first):8.1f}  {what}")
    return back, seen_late


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--stops", type=int, default=50)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--sleep", type=float, default=0.2)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}")
    workspace = services.workspace_create(name="bench tools", owner=user)
    chats = [services.chat_create(workspace=workspace, title=f"tools {i}") for i in range(max(args.turns, 1))]
    Chat.objects.filter(workspace=workspace).update(tools=["demo.*"])
    token = Token.objects.create(user=user).key
    tmp = Path(tempfile.mkdtemp(prefix="mothership-bench-"))
    log = tmp / "demo-tools.jsonl"
    env = {
        "MOTHERSHIP_CELERY_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
        "MCP_SERVERS": json.dumps([demo_entry(log)]),
        "MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": 200,
        "MOTHERSHIP_MAX_CONCURRENT_TURNS": args.turns + 10,
    }
    worker = processes.start_worker(tmp, name="bench-worker", concurrency=args.turns + 4, **env)
    server, base = processes.start_server(tmp, **env)
    try:
        asyncio.run(overhead(base, token, [str(chats[0].id)], args.sleep, log))  # the server starts (once per worker)
        stop_times = asyncio.run(stops(base, token, str(chats[0].id), args.stops, log))
        back, seen_late = asyncio.run(overhead(base, token, [str(c.id) for c in chats[: args.turns]], args.sleep, log))
    finally:
        server.stop()
        worker.stop()
        workspace.delete()
        user.delete()
    ms = lambda v: v * 1000  # noqa: E731
    print(f"database={django.db.connection.vendor} python={sys.version.split()[0]}")
    print(
        f"Stop mid-call → stream.cancelled at the socket (n={len(stop_times)}, every stop reached the server): "
        f"p50={ms(statistics.median(stop_times)):.1f} ms  p99={ms(percentile(stop_times, 99)):.1f} ms  "
        f"max={ms(max(stop_times)):.1f} ms"
    )
    for what, values in (
        ("the server's end → tool_result at the socket", back),
        ("the server's start → tool_call at the socket", seen_late),
    ):
        print(
            f"{args.turns} tool-using turns at once, sleep {args.sleep} s, {what}: p50={ms(statistics.median(values)):.1f} ms  "
            f"p99={ms(percentile(values, 99)):.1f} ms  max={ms(max(values)):.1f} ms"
        )


if __name__ == "__main__":
    main()
