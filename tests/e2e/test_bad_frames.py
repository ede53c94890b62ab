"""Bad frames against the real server (uvicorn as ``make run`` starts it): never a dead consumer."""

from __future__ import annotations

import json

import pytest
import websockets

from mothership.infra.socket import MAX_FRAME_BYTES
from mothership.processes import WS_MAX_BYTES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


async def _pong(socket) -> bool:
    await socket.send(json.dumps({"type": "ping"}))
    return json.loads(await socket.recv()) == {"type": "pong"}


async def test_frames_past_the_limits_are_refused_and_other_sockets_are_unaffected(live_server_url, token):
    ws_url = live_server_url.replace("http", "ws") + f"/ws/?token={token}"
    async with websockets.connect(ws_url, max_size=None) as bystander, websockets.connect(ws_url, max_size=None) as sender:
        # Past the app's limit, within the server's: an error frame, the socket stays open.
        await sender.send("x" * (MAX_FRAME_BYTES + 1))
        reply = json.loads(await sender.recv())
        assert (reply["type"], reply["code"]) == ("error", "too_large")
        # Deeper than Python's JSON parser can follow.
        await sender.send("[" * 30_000 + "]" * 30_000)
        assert json.loads(await sender.recv())["code"] == "bad_json"
        # A binary frame.
        await sender.send(b"\x00\x01")
        assert json.loads(await sender.recv())["code"] == "bad_frame"
        assert await _pong(sender)
        # Past the server's limit: never read into memory, the socket is closed with 1009.
        # (The server closes it on reading the frame's header: the rest of the frame may still be
        # on its way, so the close can reach the sender while it sends.)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await sender.send("x" * (WS_MAX_BYTES + 1))
            await sender.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert await _pong(bystander)


async def test_a_socket_that_floods_is_answered_rate_limited_and_others_are_unaffected(live_server_url, token):
    """400 messages at once against a burst of 100 and 20 a second (the defaults)."""
    import asyncio
    import time

    from django.conf import settings

    ws_url = live_server_url.replace("http", "ws") + f"/ws/?token={token}"
    async with websockets.connect(ws_url) as bystander, websockets.connect(ws_url) as flooder:
        started = time.monotonic()
        await asyncio.gather(*(flooder.send(json.dumps({"type": "ping"})) for _ in range(400)))
        replies = [json.loads(await flooder.recv()) for _ in range(400)]
        elapsed = time.monotonic() - started
        pongs = sum(1 for r in replies if r == {"type": "pong"})
        limited = [r for r in replies if r.get("code") == "rate_limited"]
        assert pongs + len(limited) == 400
        allowed = settings.MOTHERSHIP_WS_MESSAGE_BURST + settings.MOTHERSHIP_WS_MESSAGES_PER_SECOND * elapsed
        assert settings.MOTHERSHIP_WS_MESSAGE_BURST <= pongs <= allowed + 1, (pongs, elapsed)
        assert limited[0]["type"] == "error" and limited[0]["message"]
        assert await _pong(bystander)  # another socket never waits for the flood
        await asyncio.sleep(0.2)  # a few messages' worth of allowance back
        assert await _pong(flooder)  # and the flooder is served again, on the same socket
