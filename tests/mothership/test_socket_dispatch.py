"""The socket's own dispatch loop and middleware stack (``mothership.infra.socket``, ``mothership.ws_auth``)."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from mothership.asgi import application
from mothership.consumers import MothershipConsumer
from mothership.infra.socket import _dispatch_serially
from mothership.ws_auth import socket_auth_stack

pytestmark = pytest.mark.django_db(transaction=True)


async def test_messages_of_both_sources_are_dispatched_one_at_a_time_each_source_in_order():
    client, layer = asyncio.Queue(), asyncio.Queue()
    for n in range(40):
        client.put_nowait(("client", n))
        layer.put_nowait(("layer", n))
    client.put_nowait(("client", "stop"))
    seen, running = [], []

    async def dispatch(message):
        if message[1] == "stop":
            raise StopConsumer
        running.append(message)
        assert len(running) == 1, running  # never two dispatches at once
        await asyncio.sleep(0.001 if message[1] % 7 == 0 else 0)  # some dispatches wait
        running.remove(message)
        seen.append(message)

    with pytest.raises(StopConsumer):
        await asyncio.wait_for(_dispatch_serially((client.get, layer.get), dispatch), 5)
    for source in ("client", "layer"):
        numbers = [n for s, n in seen if s == source]
        assert numbers == sorted(numbers), source  # each source in its own order
    assert [n for s, n in seen if s == "client"] == list(range(40))


async def test_a_dispatch_that_raises_ends_the_loop_and_stops_both_readers():
    waiting = asyncio.Event()
    cancelled = asyncio.Event()

    async def quiet():
        waiting.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    queue = asyncio.Queue()

    async def failing(message):
        await waiting.wait()
        raise RuntimeError("boom")

    queue.put_nowait("one")
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(_dispatch_serially((queue.get, quiet), failing), 5)
    assert cancelled.is_set()  # the other reader's wait was cancelled, not left behind


async def test_a_closed_socket_leaves_no_channel_behind(user, chat):
    layer = get_channel_layer()._get_layer()
    before = set(layer.channels)
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    assert (await communicator.receive_json_from(timeout=3))["type"] == "subscribed"
    (channel,) = set(layer.channels) - before
    assert channel in layer._shards[0]._subscribed_to
    await communicator.disconnect()
    assert channel not in layer.channels
    assert channel not in layer._shards[0]._subscribed_to


async def test_a_session_cookie_socket_is_its_user_and_frames_go_straight_to_the_server(user, chat):
    browser = Client()
    await database_sync_to_async(browser.force_login)(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
    communicator = WebsocketCommunicator(
        application, "/ws/", headers=[(b"cookie", cookie), (b"origin", b"http://testserver"), (b"host", b"testserver")]
    )
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    assert (await communicator.receive_json_from(timeout=3)) == {"type": "subscribed", "conversationId": str(chat.id)}
    await communicator.disconnect()

    # What the stack hands the consumer is the server's own send: channels' session wrapper, which
    # looked at the session for every frame and never saves one for a socket, is not in between.
    seen = {}

    async def consumer(scope, receive, send):
        seen.update(user=scope["user"], send=send)

    async def server_send(message):
        pass

    scope = {"type": "websocket", "path": "/ws/", "headers": [(b"cookie", cookie)], "query_string": b""}
    await socket_auth_stack(consumer)(scope, None, server_send)
    assert seen["send"] is server_send
    assert (await database_sync_to_async(lambda: seen["user"].pk)()) == user.pk
