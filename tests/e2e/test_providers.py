"""Each real provider in a real worker process (configured by its environment), against a local
server speaking the provider's streaming wire format, through real Redis and a real socket."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator

from chats.models import Message
from mothership.consumers import MothershipConsumer
from streams.models import Stream
from tests.support import fake_anthropic, fake_openai, processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PROVIDERS = {
    "anthropic": (fake_anthropic.FakeAnthropic, fake_anthropic.WORDS, "ANTHROPIC", fake_anthropic.API_KEY),
    "openai": (fake_openai.FakeOpenAI, fake_openai.WORDS, "OPENAI", "sk-test"),
}


@pytest.fixture(scope="module", params=sorted(PROVIDERS))
def provider_stack(request, django_db_setup, django_db_blocker, tmp_path_factory):
    server_class, words, prefix, key = PROVIDERS[request.param]
    server = server_class()
    queue = f"{request.param}-{uuid.uuid4().hex[:8]}"
    env = {
        "LLM_PROVIDER": request.param,
        "LLM_MODEL": f"{request.param}-fake",
        f"{prefix}_API_KEY": key,
        f"{prefix}_BASE_URL": server.url,
    }
    worker = processes.start_worker(
        tmp_path_factory.mktemp(request.param),
        name=request.param,
        MOTHERSHIP_CELERY_QUEUE=queue,
        MOTHERSHIP_DELTA_FLUSH_MS=0,
        **env,
    )
    yield request.param, server, words, queue, env
    worker.stop()
    server.stop()


@pytest.fixture
def stack(provider_stack, settings):
    name, server, words, queue, env = provider_stack
    for variable, value in env.items():  # the web side records the provider on the stream
        setattr(settings, variable, value)
    return provider_stack


async def _turn(api, user, chat, queue: str, content: str, *, until: str, cancel_after: int | None = None):
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"

    def post(path, body):
        with processes.routed_to(queue):
            return api.post(path, body, format="json")

    sent = (await database_sync_to_async(post)(f"/api/mothership/chats/{chat.id}/messages", {"content": content})).json()
    events, cancelled_at = [], None
    while not events or events[-1]["type"] != until:
        events.append(await communicator.receive_json_from(timeout=10))
        deltas = sum(e["type"] == "stream.delta" for e in events)
        if cancel_after is not None and cancelled_at is None and deltas >= cancel_after:
            cancelled_at = time.monotonic()
            answer = await database_sync_to_async(post)(
                f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": sent["stream_id"]}
            )
            assert answer.json()["cancelled"] is True
    await communicator.disconnect()
    return sent, events, cancelled_at


async def test_a_reply_streams_from_the_provider_to_the_socket(stack, api, user, chat):
    name, server, words, queue, _ = stack
    sent, events, _ = await _turn(api, user, chat, queue, "hello", until="stream.completed")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "stream.started" and (events[0]["provider"], events[0]["model"]) == (name, f"{name}-fake")
    assert "".join(e["text"] for e in events if e["type"] == "stream.delta") == "".join(words)
    usage = next(e for e in events if e["type"] == "stream.usage")["usage"]
    assert usage["output_tokens"] == len(words)
    stream = await database_sync_to_async(Stream.objects.get)(pk=sent["stream_id"])
    assert (stream.status, stream.provider, stream.model) == ("completed", name, f"{name}-fake")


async def test_a_stop_ends_the_turn_and_hangs_up_on_a_silent_provider(stack, api, user, chat):
    _, server, words, queue, _ = stack
    server.hung_up.clear()
    # Three deltas, then the provider goes silent: the worker is blocked reading when the stop lands.
    sent, events, cancelled_at = await _turn(api, user, chat, queue, "stall mid-stream", until="stream.cancelled", cancel_after=3)
    assert await asyncio.to_thread(server.hung_up.wait, 3)  # the worker hung up on the provider
    assert time.monotonic() - cancelled_at < 3
    text = "".join(e["text"] for e in events if e["type"] == "stream.delta")
    assert text == "".join(words[:3])
    message = await database_sync_to_async(Message.objects.get)(stream_id=sent["stream_id"], role="assistant")
    assert (message.status, message.content) == ("cancelled", text)
