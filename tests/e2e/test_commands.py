"""Operator commands against a real worker, Redis and sockets: they call the API's own services."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
from django.core.management import call_command

from chats.models import Chat, Message
from streams.models import Stream
from tests.support import processes
from warming.models import WarmingSchedule

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _start(api, chat, queue, content="hello") -> dict:
    with processes.routed_to(queue):
        response = api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": content}, format="json")
    assert response.status_code == 201
    return response.json()


def _until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_status_tail_and_cancel_a_live_stream_from_the_command_line(slow_worker, api, chat):
    sent = _start(api, chat, slow_worker.queue)
    _until(lambda: Stream.objects.get(pk=sent["stream_id"]).status == "streaming")

    rows = json.loads(run("streams_status", "--json"))
    row = next(r for r in rows if r["stream"] == sent["stream_id"])
    assert row["owns_lock"] and row["status"] == "streaming" and row["heartbeat_age_seconds"] is not None

    tail = io.StringIO()
    follower = threading.Thread(
        target=lambda: call_command("stream_tail", sent["stream_id"], "--json", "--timeout", "20", stdout=tail)
    )
    follower.start()
    _until(lambda: tail.getvalue().count("stream.delta") >= 3)

    answer = json.loads(run("cancel_stream", str(chat.id), sent["stream_id"], "--json"))
    follower.join(20)

    assert answer == {"ok": True, "cancelled": True, "stream_id": sent["stream_id"], "reason": None, "settled": True}
    followed = [json.loads(line) for line in tail.getvalue().splitlines()]
    assert [e["seq"] for e in followed] == list(range(1, len(followed) + 1))  # replayed, then live: no gap, no duplicate
    assert followed[-1]["type"] == "stream.cancelled"  # what every socket receives
    message = Message.objects.get(pk=sent["message_id"])
    assert message.status == "cancelled" and message.content == "".join(
        e["text"] for e in followed if e["type"] == "stream.delta"
    )

    with pytest.raises(SystemExit) as exited:  # nothing left to stop: exit status 1, truthful answer
        run("cancel_stream", str(chat.id), sent["stream_id"])
    assert exited.value.code == 1


def test_close_chat_stops_the_turn_and_warming(slow_worker, api, chat):
    WarmingSchedule.objects.create(chat=chat, enabled=True)
    sent = _start(api, chat, slow_worker.queue)
    _until(lambda: Stream.objects.get(pk=sent["stream_id"]).status == "streaming")

    answer = json.loads(run("close_chat", str(chat.id), "--json"))

    assert answer == {"ok": True, "warming_disabled": True, "cancelled": True, "stream_id": sent["stream_id"]}
    assert Chat.objects.get(pk=chat.pk).closed_at is not None
    assert WarmingSchedule.objects.get(chat=chat).stop_reason == "closed"
    assert "no turn was running" in run("close_chat", str(chat.id))
