"""A streaming tile says "stalled" once its stream has sent nothing for MOTHERSHIP_STALL_SECONDS
while its worker still holds the lock (the model has gone quiet), and stops saying it with the
next event. Real Redis: the event log's append records when each stream last said anything."""

from __future__ import annotations

import time

import pytest

from mothership import selectors
from streams import eventlog, events, locks
from streams.models import Stream
from streams.services import stream_start

pytestmark = pytest.mark.django_db(transaction=True)


def _event(turn, seq: int, type: str = events.DELTA) -> None:
    fields = {"text": "word "} if type == events.DELTA else {}
    event = events.stream_event(type=type, chat_id=turn.stream.chat_id, stream_id=turn.stream.id, seq=seq, **fields)
    eventlog.append(chat_id=turn.stream.chat_id, stream_id=turn.stream.id, event=event)


def _view(user, chat):
    (view,) = [v for v in selectors.chat_list(user=user)[0] if v.chat.id == chat.id]
    return view


def test_a_quiet_stream_is_stalled_until_its_next_event(settings, user, chat, api, client, turns_not_enqueued):
    settings.MOTHERSHIP_STALL_SECONDS = 1
    turn = stream_start(chat=chat, content="hello")
    assert not _view(user, chat).stalled  # queued: no worker has said anything yet
    Stream.objects.filter(pk=turn.stream.id).update(status=Stream.Status.STREAMING)
    _event(turn, 1, events.STARTED)
    view = _view(user, chat)
    assert view.state == "streaming" and not view.stalled and view.quiet_seconds == 0

    time.sleep(1.2)
    view = _view(user, chat)
    assert view.state == "streaming" and view.stalled and view.quiet_seconds >= 1
    (listed,) = api.get("/api/mothership/chats").json()
    assert (listed["state"], listed["stalled"]) == ("streaming", True)
    client.force_login(user)
    assert "stalled — no word for 1 s" in client.get("/").content.decode()

    _event(turn, 2)
    assert not _view(user, chat).stalled
    assert api.get("/api/mothership/chats").json()[0]["stalled"] is False


def test_an_idle_chat_and_a_dead_worker_are_never_stalled(settings, user, chat, turns_not_enqueued):
    settings.MOTHERSHIP_STALL_SECONDS = 1
    assert not _view(user, chat).stalled
    turn = stream_start(chat=chat, content="hello")
    Stream.objects.filter(pk=turn.stream.id).update(status=Stream.Status.STREAMING)
    _event(turn, 1, events.STARTED)
    time.sleep(1.2)
    locks.lock_release(chat_id=chat.id, stream_id=turn.stream.id)  # the worker died: its lock is gone
    view = _view(user, chat)
    assert view.state == "interrupted" and not view.stalled
