"""An in-process socket (the real consumer through Channels' communicator) subscribed to a chat."""

from __future__ import annotations

from channels.testing.websocket import WebsocketCommunicator

from mothership.consumers import MothershipConsumer


async def subscribed_socket(user, chat) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
    return communicator


async def receive_until(events: list[dict], tab, predicate, timeout: float = 20) -> dict:
    """The first of ``events`` (read on from ``tab`` as needed, each kept) that ``predicate`` accepts."""
    while True:
        for event in events:
            if predicate(event):
                return event
        events.append(await tab.receive_json_from(timeout=timeout))
