"""Stop latency: from the cancel POST to the ``stream.cancelled`` event at a socket client.

Starts a real uvicorn server and a real Celery worker (the same processes the tests use), then
for each of --cancels turns: send a message over HTTP, wait for its first delta on a WebSocket,
POST the cancel and time until the terminal event arrives on that socket. Also prints how long
the worker took to notice each stop (cancel requested → noticed, from the stream's row).

With --background K, K other chats keep a reply streaming (50 tokens/s each) the whole time,
so the stops are measured while the worker, Redis and the server carry that load.

Usage: .venv/bin/python bench/cancel_latency.py [--cancels 200] [--background 0]
Uses DATABASE_URL / REDIS_URL when set (embedded defaults otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
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
from streams.models import Stream  # noqa: E402
from tests.support import processes  # noqa: E402


async def run(base: str, token: str, chat_id: str, cancels: int) -> tuple[list[float], list[str]]:
    headers = {"Authorization": f"Token {token}"}
    ws_url = base.replace("http", "ws", 1) + f"/ws/?token={token}"
    latencies, stream_ids = [], []
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client,
        websockets.connect(ws_url, close_timeout=0.2) as socket,
    ):
        await socket.send(json.dumps({"type": "subscribe", "conversationId": chat_id}))
        while json.loads(await socket.recv())["type"] != "subscribed":
            pass
        for i in range(cancels):
            sent = await client.post(f"/api/mothership/chats/{chat_id}/messages", json={"content": f"bench {i}"})
            sent.raise_for_status()
            stream_id = sent.json()["stream_id"]
            while True:  # wait until it is really streaming
                event = json.loads(await socket.recv())
                if event.get("streamId") == stream_id and event["type"] == "stream.delta":
                    break
            t0 = time.perf_counter()
            answer_task = asyncio.create_task(
                client.post(f"/api/mothership/chats/{chat_id}/cancel", json={"stream_id": stream_id})
            )
            while True:
                event = json.loads(await socket.recv())
                if event.get("streamId") == stream_id and event["type"] == "stream.cancelled":
                    latencies.append(time.perf_counter() - t0)
                    break
            answer = (await answer_task).json()
            assert answer["cancelled"] is True and answer["settled"] is True, answer
            stream_ids.append(stream_id)
    return latencies, stream_ids


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--cancels", type=int, default=200)
    parser.add_argument("--background", type=int, default=0)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}")
    workspace = services.workspace_create(name="bench", owner=user)
    chat = services.chat_create(workspace=workspace, title="cancel latency")
    token = Token.objects.create(user=user).key
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="mothership-bench-"))
    env = {"MOTHERSHIP_CELERY_QUEUE": queue, "MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": 50, "MOTHERSHIP_LOCAL_REPLY_TOKENS": 5000}
    worker = processes.start_worker(tmp, name="bench-worker", concurrency=args.background + 4, **env)
    server, base = processes.start_server(tmp, **env)
    background = [services.chat_create(workspace=workspace, title=f"load {i}") for i in range(args.background)]
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
            load = [
                client.post(f"/api/mothership/chats/{c.id}/messages", json={"content": "load"}).json()["stream_id"]
                for c in background
            ]
        time.sleep(1.0 if background else 0)
        live = Stream.objects.filter(pk__in=load, status="streaming").count()
        latencies, stream_ids = asyncio.run(run(base, token, str(chat.id), args.cancels))
        still_live = Stream.objects.filter(pk__in=load, status="streaming").count()
        with httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
            for c, stream_id in zip(background, load):
                client.post(f"/api/mothership/chats/{c.id}/cancel", json={"stream_id": stream_id})
    finally:
        server.stop()
        worker.stop()
    notices = [
        (s.cancel_noticed_at - s.cancel_requested_at).total_seconds()
        for s in Stream.objects.filter(pk__in=stream_ids)
        if s.cancel_noticed_at and s.cancel_requested_at
    ]
    workspace.delete()
    user.delete()
    ms = lambda v: v * 1000  # noqa: E731
    print(
        f"database={django.db.connection.vendor} cancels={len(latencies)} "
        f"background streams={args.background} (streaming at start: {live}, at end: {still_live})"
    )
    print(
        f"POST → stream.cancelled at the socket: p50={ms(statistics.median(latencies)):.1f} ms  "
        f"p99={ms(percentile(latencies, 99)):.1f} ms  max={ms(max(latencies)):.1f} ms"
    )
    print(
        f"stop requested → noticed by the worker (n={len(notices)}): p50={ms(statistics.median(notices)):.1f} ms  "
        f"p99={ms(percentile(notices, 99)):.1f} ms  max={ms(max(notices)):.1f} ms"
    )


if __name__ == "__main__":
    main()
