"""The ceiling for ``bench/fanout.py``: a bare Channels consumer that joins a group and forwards
what is published to it (no app code, no database), on the same channels-redis pub/sub layer."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.echo_asgi_settings")

import django  # noqa: E402

django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

PREFIX = "mothership-bench-echo"


def publish_channel(group: str) -> str:
    """The Redis channel the layer subscribes a group's members to (channels-redis' naming)."""
    return f"{PREFIX}__group__{group}"


class EchoConsumer(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content, **kwargs):
        if content.get("type") == "echo.subscribe":
            await self.channel_layer.group_add(content["group"], self.channel_name)
            await self.send_json({"type": "echo.subscribed"})

    async def echo_event(self, message):
        await self.send_json(message["event"])


async def _http(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"echo"})


application = ProtocolTypeRouter({"http": _http, "websocket": URLRouter([path("", EchoConsumer.as_asgi())])})
