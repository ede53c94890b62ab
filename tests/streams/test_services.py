from __future__ import annotations

import time

import pytest

from chats.models import Chat, Message
from mothership.infra.redis import get_redis
from streams import eventlog, events, locks
from streams.models import Stream
from streams.providers.local import LocalProvider
from streams.services import StreamConflict, stream_finalize, stream_run, stream_start
from tests.support.threads import app_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def run_inline(turns_not_enqueued):
    # These tests run the worker side inline; no worker process may pick the turn up too.
    return turns_not_enqueued


@pytest.fixture
def fast_model(settings):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 25
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0


def test_start_sets_marker_and_lock_together_and_refuses_a_second_turn(chat):
    turn = stream_start(chat=chat, content="hi")
    chat.refresh_from_db()
    assert chat.active_stream_id == turn.stream.id
    assert locks.lock_owner(chat_id=chat.id) == str(turn.stream.id)
    with pytest.raises(StreamConflict):
        stream_start(chat=chat, content="again")
    assert Stream.objects.filter(chat=chat).count() == 1


def test_a_failed_start_releases_the_lock_it_took(chat, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("db down")

    monkeypatch.setattr("streams.services.start.statements.execute", boom)  # the start's first write
    with pytest.raises(RuntimeError):
        stream_start(chat=chat, content="hi")
    assert locks.lock_owner(chat_id=chat.id) is None
    assert Stream.objects.count() == 0


def test_run_streams_gapless_events_persists_the_reply_and_clears_marker_and_lock(chat, fast_model):
    turn = stream_start(chat=chat, content="hello")
    assert stream_run(stream_id=turn.stream.id) == "completed"

    log = eventlog.read(turn.stream.id)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert log[0]["type"] == events.STARTED
    assert log[-1]["type"] == events.COMPLETED
    assert log[-1]["message_id"] == str(turn.assistant_message.id) and log[-1]["partial"] is False
    assert sum(e["type"] == events.TERMINAL_BY_STATUS["completed"] for e in log) == 1
    expected = "".join(LocalProvider(tokens_per_second=0, reply_tokens=25).reply_for([{"role": "user", "content": "hello"}]))
    assert eventlog.snapshot_text(log) == expected

    message = Message.objects.get(pk=turn.assistant_message.id)
    assert (message.content, message.status, message.output_tokens) == (expected, "complete", 25)
    stream = Stream.objects.get(pk=turn.stream.id)
    assert (stream.status, stream.last_seq) == ("completed", log[-1]["seq"])
    chat.refresh_from_db()
    assert chat.active_stream_id is None
    assert locks.lock_owner(chat_id=chat.id) is None


def test_a_stream_whose_lock_expired_in_the_queue_never_starts(chat, fast_model):
    turn = stream_start(chat=chat, content="hello")
    get_redis().delete(locks.lock_key(chat.id))
    assert stream_run(stream_id=turn.stream.id) == "lock_lost"
    assert Stream.objects.get(pk=turn.stream.id).status == "queued"
    assert eventlog.read(turn.stream.id) == []


@pytest.mark.parametrize("flush_ms", [0, 30], ids=["every-delta", "frame-clock"])
def test_a_fenced_worker_cannot_touch_the_newer_turn(chat, settings, flush_ms):
    """A stale worker whose lock expired and was taken by a newer stream never touches the newer turn."""
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 50
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 200
    settings.MOTHERSHIP_DELTA_FLUSH_MS = flush_ms
    old = stream_start(chat=chat, content="old turn")
    result = {}
    worker = app_thread(lambda: result.setdefault("status", stream_run(stream_id=old.stream.id)))
    worker.start()
    deadline = time.monotonic() + 5
    while len(eventlog.read(old.stream.id)) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)

    # The old lock "expires" and a newer turn takes the chat.
    get_redis().delete(locks.lock_key(chat.id))
    Chat.objects.filter(pk=chat.pk).update(active_stream_id=None)
    new = stream_start(chat=chat, content="new turn")
    worker.join(timeout=10)

    # The old run seals its own turn with every character it received, and only its own.
    assert result["status"] == "interrupted"
    old_log = eventlog.read(old.stream.id)
    assert old_log[-1]["type"] == "stream.interrupted"
    assert [e["seq"] for e in old_log] == list(range(1, len(old_log) + 1))
    sealed = Stream.objects.get(pk=old.stream.id)
    assert (sealed.status, sealed.reason, sealed.last_seq) == ("interrupted", "lock_lost", old_log[-1]["seq"])
    old_text = Message.objects.get(pk=old.assistant_message.id).content
    assert old_text and old_text == eventlog.snapshot_text(old_log)
    chat.refresh_from_db()
    assert chat.active_stream_id == new.stream.id
    assert locks.lock_owner(chat_id=chat.id) == str(new.stream.id)
    assert Stream.objects.get(pk=new.stream.id).status == "queued"
    assert Message.objects.get(pk=new.assistant_message.id).content == ""


def test_history_given_to_the_model_includes_earlier_turns(chat, fast_model, monkeypatch):
    seen = []
    original = LocalProvider.stream

    def spy(self, *, messages, stop, **kwargs):
        seen.append(messages)
        return original(self, messages=messages, stop=stop, **kwargs)

    monkeypatch.setattr(LocalProvider, "stream", spy)
    first = stream_start(chat=chat, content="one")
    stream_run(stream_id=first.stream.id)
    second = stream_start(chat=chat, content="two")
    stream_run(stream_id=second.stream.id)
    assert [m["role"] for m in seen[1]] == ["user", "assistant", "user"]
    assert seen[1][-1]["content"] == "two"


def test_sealing_a_stale_turn_never_clears_the_newer_turns_marker(chat):
    # Given a turn whose worker died (its lock expired) and a newer turn that took the chat
    old = stream_start(chat=chat, content="old turn")
    locks.lock_release(chat_id=chat.id, stream_id=old.stream.id)
    new = stream_start(chat=chat, content="new turn")  # replaces the stale marker

    # When the old turn is sealed late (by the sweeper or a stop)
    assert stream_finalize(stream=old.stream, status="interrupted", reason="worker_lost", text="", last_seq=0)

    # Then the newer turn's marker and lock are left alone, and the list still shows it live
    chat.refresh_from_db()
    assert chat.active_stream_id == new.stream.id
    assert locks.lock_owner(chat_id=chat.id) == str(new.stream.id)
    assert Stream.objects.get(pk=old.stream.pk).status == "interrupted"
    assert Stream.objects.get(pk=new.stream.pk).status == "queued"
