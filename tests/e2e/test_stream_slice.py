"""The first slice end to end: real worker process, real Redis, real channel layer, real sockets."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async

from chats.models import Chat, Message
from streams import locks
from streams.models import Stream
from streams.providers.local import LocalProvider
from tests.support.sockets import subscribed_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TERMINAL = {"stream.completed", "stream.cancelled", "stream.interrupted", "stream.failed"}


def expected_reply(content: str) -> str:
    # The worker runs with MOTHERSHIP_LOCAL_REPLY_TOKENS=40 (tests/support/processes.py).
    return "".join(LocalProvider(tokens_per_second=0, reply_tokens=40).reply_for([{"role": "user", "content": content}]))


async def collect_until_terminal(receive, timeout: float = 20) -> list[dict]:
    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = await receive(max(0.1, deadline - time.monotonic()))
        if event.get("type", "").startswith("stream."):
            events.append(event)
            if event["type"] in TERMINAL:
                return events
    raise AssertionError(f"no terminal event; got {events[-3:]}")


def assert_gapless_stream(events: list[dict], stream_id: str, text: str) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["streamId"] == stream_id for e in events)
    assert events[0]["type"] == "stream.started"
    assert events[-1]["type"] == "stream.completed"
    assert "".join(e.get("text", "") for e in events if e["type"] == "stream.delta") == text


async def test_reply_streams_through_the_real_worker_into_a_subscribed_socket(live_worker, api, user, chat):
    communicator = await subscribed_socket(user, chat)

    response = await database_sync_to_async(api.post)(
        f"/api/mothership/chats/{chat.id}/messages", {"content": "tell me"}, format="json"
    )
    assert response.status_code == 201
    stream_id = response.json()["stream_id"]

    events = await collect_until_terminal(lambda t: communicator.receive_json_from(timeout=t))
    assert_gapless_stream(events, stream_id, expected_reply("tell me"))
    await communicator.disconnect()

    message = await database_sync_to_async(Message.objects.get)(pk=response.json()["message_id"])
    assert (message.content, message.status) == (expected_reply("tell me"), "complete")
    assert (await database_sync_to_async(Stream.objects.get)(pk=stream_id)).status == "completed"
    assert (await database_sync_to_async(Chat.objects.get)(pk=chat.id)).active_stream_id is None
    assert await database_sync_to_async(locks.lock_owner)(chat_id=chat.id) is None


async def _ws_receive(socket, timeout):
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def test_two_tabs_over_real_websockets_see_the_same_stream_and_closing_one_stops_nothing(
    live_worker, live_server_url, token, chat
):
    ws_url = live_server_url.replace("http", "ws") + f"/ws/?token={token}"
    headers = {"Authorization": f"Token {token}"}
    async with websockets.connect(ws_url) as tab1, websockets.connect(ws_url) as tab2:
        for tab in (tab1, tab2):
            await tab.send(json.dumps({"type": "subscribe", "conversationId": str(chat.id)}))
            assert (await _ws_receive(tab, 5))["type"] == "subscribed"
        async with httpx.AsyncClient(base_url=live_server_url, headers=headers) as http:
            response = await http.post(f"/api/mothership/chats/{chat.id}/messages", json={"content": "two tabs"})
            assert response.status_code == 201, response.text
            stream_id = response.json()["stream_id"]
            first = await _ws_receive(tab1, 5)
            await tab1.close()  # closing a tab mid-stream must not stop the stream
            events = await collect_until_terminal(lambda t: _ws_receive(tab2, t))
            assert_gapless_stream(events, stream_id, expected_reply("two tabs"))
            assert first == events[0]
            detail = (await http.get(f"/api/mothership/chats/{chat.id}")).json()
    assert detail["state"] == "idle" and detail["active_stream_id"] is None
    assert detail["messages"][-1]["content"] == expected_reply("two tabs")


def test_browser_session_login_page_and_cookie_authenticated_socket(live_server_url, user, chat):
    with httpx.Client(base_url=live_server_url) as browser:
        page = browser.get("/accounts/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        login = browser.post(
            "/accounts/login/",
            data={"username": "alice", "password": "pw-123456", "csrfmiddlewaretoken": csrf},
            headers={"Referer": live_server_url + "/accounts/login/"},
        )
        assert login.status_code == 302
        home = browser.get("/")
        assert home.status_code == 200 and "First chat" in home.text
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())

    async def subscribe(origin):
        url = live_server_url.replace("http", "ws") + "/ws/"
        async with websockets.connect(url, additional_headers={"Cookie": cookie}, origin=origin) as socket:
            await socket.send(json.dumps({"type": "subscribe", "conversationId": str(chat.id)}))
            return await _ws_receive(socket, 5)

    assert asyncio.run(subscribe(live_server_url))["type"] == "subscribed"
    with pytest.raises(websockets.InvalidStatus):
        asyncio.run(subscribe("https://evil.example"))  # cross-site page with the user's cookie
