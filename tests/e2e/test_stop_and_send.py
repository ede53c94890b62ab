"""Stop and send: ``POST …/messages {"content", "interrupt": "<stream id>"}`` stops exactly that
stream (owner-aware, as Stop is) and starts the new turn, in one request; a stale id answers 409
with the live turn's id and stops nothing. Over a real worker process, real Redis and a socket."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async

from chats.models import Message
from streams import locks
from streams.models import Stream
from tests.support import processes
from tests.support.sockets import receive_until, subscribed_socket
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


async def _send(api, chat, queue: str, content: str, interrupt: str | None = None):
    body = {"content": content, **({"interrupt": interrupt} if interrupt else {})}

    def post():
        with processes.routed_to(queue):
            return api.post(f"/api/mothership/chats/{chat.id}/messages", body, format="json")

    return await database_sync_to_async(post)()


async def test_stop_and_send_stops_that_turn_keeps_its_text_and_starts_the_new_one(slow_worker, api, user, chat):
    communicator = await subscribed_socket(user, chat)
    first = (await _send(api, chat, slow_worker.queue, "a long one")).json()
    events: list[dict] = []
    await receive_until(
        events, communicator, lambda e: e["type"] == "stream.delta" and e["streamId"] == first["stream_id"] and e["seq"] >= 5
    )

    answer = await _send(api, chat, slow_worker.queue, "actually, this instead", interrupt=first["stream_id"])
    assert answer.status_code == 201, answer.content
    second = answer.json()
    assert second["stream_id"] != first["stream_id"]

    stopped = await receive_until(events, communicator, lambda e: e["type"] == "stream.cancelled")
    assert stopped["streamId"] == first["stream_id"] and stopped["partial"] is True
    started = await receive_until(
        events, communicator, lambda e: e["type"] == "stream.started" and e["streamId"] == second["stream_id"]
    )
    assert events.index(stopped) < events.index(started)  # the old turn ended before the new one began
    await communicator.disconnect()

    old = await database_sync_to_async(Stream.objects.get)(pk=first["stream_id"])
    kept = await database_sync_to_async(Message.objects.get)(pk=first["message_id"])
    assert (old.status, old.reason) == ("cancelled", "user") and kept.content  # its text is kept
    assert locks.lock_owner(chat_id=chat.id) == second["stream_id"]
    await database_sync_to_async(api.post)(
        f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": second["stream_id"]}, format="json"
    )


async def test_a_stale_interrupt_stops_nothing_and_names_the_live_turn(slow_worker, api, chat):
    live = (await _send(api, chat, slow_worker.queue, "running")).json()
    for stale in (str(uuid.uuid4()), None):
        answer = await _send(api, chat, slow_worker.queue, "mine", interrupt=stale)
        assert answer.status_code == 409, answer.content
        assert answer.json()["active_stream_id"] == live["stream_id"] and answer.json()["detail"]
    stream = await database_sync_to_async(Stream.objects.get)(pk=live["stream_id"])
    assert stream.status in Stream.LIVE_STATUSES and locks.lock_owner(chat_id=chat.id) == live["stream_id"]
    assert await database_sync_to_async(Message.objects.filter(chat=chat, content="mine").count)() == 0
    await database_sync_to_async(api.post)(
        f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": live["stream_id"]}, format="json"
    )


async def test_an_interrupt_of_a_turn_that_already_ended_just_sends(slow_worker, api, user, chat):
    # Given: a turn that ran to its end.
    done = (await _send(api, chat, slow_worker.queue, "/echo quick")).json()
    ended = await database_sync_to_async(wait_for)(
        lambda: Stream.objects.filter(pk=done["stream_id"], status="completed").first(), 10, "the first turn to end"
    )
    communicator = await subscribed_socket(user, chat)

    # When: a stop and send names it.
    answer = await _send(api, chat, slow_worker.queue, "next", interrupt=done["stream_id"])

    # Then: the ended turn is left as it was, and the new message starts a new turn that streams.
    assert answer.status_code == 201, answer.content
    new = answer.json()
    assert new["stream_id"] != done["stream_id"]
    old = await database_sync_to_async(Stream.objects.get)(pk=done["stream_id"])
    assert (old.status, old.reason, old.finished_at) == ("completed", ended.reason, ended.finished_at)
    kept = await database_sync_to_async(Message.objects.get)(pk=done["message_id"])
    assert (kept.status, kept.content) == ("complete", "quick")
    events: list[dict] = []
    started = await receive_until(
        events, communicator, lambda e: e["type"] == "stream.started" and e["streamId"] == new["stream_id"]
    )
    assert started["userMessage"] == "next"
    await receive_until(events, communicator, lambda e: e["type"] == "stream.delta" and e["streamId"] == new["stream_id"])
    assert not [e for e in events if e["streamId"] == done["stream_id"]]  # nothing more of the ended turn
    await communicator.disconnect()
    assert locks.lock_owner(chat_id=chat.id) == new["stream_id"]
    await database_sync_to_async(api.post)(
        f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": new["stream_id"]}, format="json"
    )
