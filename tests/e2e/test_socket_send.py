"""A message sent on the socket the page holds, end to end: a real uvicorn, a real worker process,
real WebSockets. The sender's answer names the turn; both tabs see it stream, gapless, to its end."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets

from tests.e2e.test_stream_slice import _ws_receive, assert_gapless_stream, collect_until_terminal, expected_reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


async def test_a_message_sent_on_the_socket_streams_to_every_tab(live_worker, live_server_url, token, chat):
    ws_url = live_server_url.replace("http", "ws") + f"/ws/?token={token}"
    async with websockets.connect(ws_url) as sender, websockets.connect(ws_url) as other:
        for tab in (sender, other):
            await tab.send(json.dumps({"type": "subscribe", "conversationId": str(chat.id)}))
            assert (await _ws_receive(tab, 5))["type"] == "subscribed"

        await sender.send(
            json.dumps({"type": "message.send", "conversationId": str(chat.id), "content": "over the socket", "requestId": "a1"})
        )
        received = []
        while True:  # the answer, and maybe the turn's first events before it
            message = await _ws_receive(sender, 10)
            if message["type"] == "message.sent":
                break
            received.append(message)
        assert message["requestId"] == "a1" and message["conversationId"] == str(chat.id)
        stream_id = message["streamId"]

        async def rest(t):
            return received.pop(0) if received else await _ws_receive(sender, t)

        sender_events = await collect_until_terminal(rest)
        other_events = await collect_until_terminal(lambda t: _ws_receive(other, t))
        for events in (sender_events, other_events):
            assert_gapless_stream(events, stream_id, expected_reply("over the socket"))
        assert sender_events[0]["userMessageId"] == message["userMessageId"]
        assert sender_events[0]["messageId"] == message["messageId"]

    async with httpx.AsyncClient(base_url=live_server_url, headers={"Authorization": f"Token {token}"}) as http:
        detail = (await http.get(f"/api/mothership/chats/{chat.id}")).json()
    assert [m["content"] for m in detail["messages"]] == ["over the socket", expected_reply("over the socket")]
