"""The sweeper finalizes orphans for good, keeping every produced token (seeds/sim-…)."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from chats.models import Chat, Message
from mothership.infra.redis import get_redis
from streams import eventlog, events, locks
from streams.models import Stream
from streams.services import stream_start, streams_sweep

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_worker(turns_not_enqueued):
    return turns_not_enqueued


def _orphan_mid_stream(chat, texts):
    """A turn whose worker published some deltas and then died (its lock expired)."""
    turn = stream_start(chat=chat, content="hi")
    Stream.objects.filter(pk=turn.stream.pk).update(status="streaming")
    eventlog.append(
        chat_id=chat.id,
        stream_id=turn.stream.id,
        event=events.stream_event(type=events.STARTED, chat_id=chat.id, stream_id=turn.stream.id, seq=1),
    )
    for i, text in enumerate(texts, start=2):
        eventlog.append(
            chat_id=chat.id,
            stream_id=turn.stream.id,
            event=events.stream_event(type=events.DELTA, chat_id=chat.id, stream_id=turn.stream.id, seq=i, text=text),
        )
    get_redis().delete(locks.lock_key(chat.id))
    return turn


def test_an_orphan_is_interrupted_with_its_text_salvaged_and_a_terminal_event(chat, django_capture_on_commit_callbacks):
    turn = _orphan_mid_stream(chat, ["Hel", "lo", " there"])
    chat.refresh_from_db()
    updated_at = chat.updated_at
    with django_capture_on_commit_callbacks(execute=True):  # the seal is announced (terminal event) after commit
        report = streams_sweep()
    assert report["interrupted"] == [str(turn.stream.id)]

    stream = Stream.objects.get(pk=turn.stream.pk)
    assert (stream.status, stream.reason, stream.last_seq) == ("interrupted", "worker_lost", 5)
    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert (message.content, message.status) == ("Hello there", "interrupted")
    log = eventlog.read(turn.stream.id)
    assert log[-1]["type"] == events.INTERRUPTED and log[-1]["seq"] == 5 and log[-1]["partial"] is True
    chat.refresh_from_db()
    assert chat.active_stream_id is None and chat.updated_at == updated_at
    assert streams_sweep()["interrupted"] == []  # for good: a second sweep changes nothing
    assert [e["type"] for e in eventlog.read(turn.stream.id)].count(events.INTERRUPTED) == 1


def test_a_queued_stream_whose_lock_expired_is_never_started(chat):
    turn = stream_start(chat=chat, content="hi")
    get_redis().delete(locks.lock_key(chat.id))
    streams_sweep()
    stream = Stream.objects.get(pk=turn.stream.pk)
    assert (stream.status, stream.reason) == ("interrupted", "never_started")


def test_live_streams_are_left_alone(chat):
    turn = stream_start(chat=chat, content="hi")
    report = streams_sweep()
    assert report["alive"] == 1 and report["interrupted"] == []
    assert Stream.objects.get(pk=turn.stream.pk).status == "queued"
    assert Chat.objects.get(pk=chat.pk).active_stream_id == turn.stream.id


def test_reconcile_streams_command_reports_as_json(chat, capsys):
    turn = _orphan_mid_stream(chat, ["x"])
    call_command("reconcile_streams", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["interrupted"] == [str(turn.stream.id)]


def test_reconcile_streams_command_refuses_bad_ids():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Not stream ids"):
        call_command("reconcile_streams", "nope")
