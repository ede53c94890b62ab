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
        await sender.send("x" * (WS_MAX_BYTES + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await sender.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert await _pong(bystander)
