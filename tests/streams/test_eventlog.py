from __future__ import annotations

import asyncio
import uuid

import pytest

from mothership.infra import groups
from mothership.infra.redis import get_redis
from streams import eventlog, events, locks


def _event(chat_id, stream_id, seq, type=events.DELTA, **fields):
    return events.stream_event(type=type, chat_id=chat_id, stream_id=stream_id, seq=seq, **fields)


def test_append_is_fenced_by_the_liveness_lock():
    chat, stream, newer = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    locks.lock_acquire(chat_id=chat, stream_id=stream)
    eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, 1, text="a"))
    # The lock passes to a newer stream: the old writer cannot add one more event.
    get_redis().set(locks.lock_key(chat), str(newer))
    with pytest.raises(eventlog.Fenced):
        eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, 2, text="b"))
    assert [e["seq"] for e in eventlog.read(stream)] == [1]
    # The finalizer of record may still write the terminal event unfenced.
    eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, 2, type=events.INTERRUPTED), fenced=False)
    assert [e["type"] for e in eventlog.read(stream)] == [events.DELTA, events.INTERRUPTED]


def test_an_append_of_a_seq_already_in_the_log_changes_nothing_and_publishes_nothing():
    """An append retried after its reply was lost (Redis restarting) is a no-op, not a duplicate."""
    chat, stream = uuid.uuid4(), uuid.uuid4()
    eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, 1, text="a"), fenced=False)
    eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, 2, text="b"), fenced=False)
    pubsub = get_redis().pubsub()
    pubsub.subscribe(groups.group_channel(groups.chat_group(chat)))
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"  # subscribed before the appends
    for seq in (1, 2):
        eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, seq, text="again"), fenced=False)
    assert [(e["seq"], e["text"]) for e in eventlog.read(stream)] == [(1, "a"), (2, "b")]
    assert eventlog.last_seq(stream) == 2
    assert pubsub.get_message(timeout=0.3) is None
    pubsub.close()


async def test_a_retried_append_reaches_a_group_member_once_and_a_new_seq_still_reaches_it():
    """At the channel layer every socket reads from: a retried append publishes nothing again."""
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    # Given: a member of the chat's group, as a socket that subscribed to the chat is.
    chat, stream = uuid.uuid4(), uuid.uuid4()
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(groups.chat_group(chat), channel)
    append = sync_to_async(eventlog.append)
    try:
        # When: seq 1 and 2 are appended, each retried as after a lost reply, then seq 3 once.
        for seq, text in ((1, "a"), (1, "a"), (2, "b"), (2, "again"), (3, "c")):
            await append(chat_id=chat, stream_id=stream, event=_event(chat, stream, seq, text=text), fenced=False)

        # Then: the member receives 1, 2, 3 exactly once each, in order, and nothing more.
        received = [await asyncio.wait_for(layer.receive(channel), 3) for _ in range(3)]
        assert [(e["seq"], e["text"]) for e in map(events.from_group_message, received)] == [(1, "a"), (2, "b"), (3, "c")]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.3)
    finally:
        await layer.group_discard(groups.chat_group(chat), channel)


def test_read_after_seq_and_snapshot_text():
    chat, stream = uuid.uuid4(), uuid.uuid4()
    eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, 1, type=events.STARTED), fenced=False)
    for seq, text in [(2, "Hel"), (3, "lo"), (4, " world")]:
        eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, seq, text=text), fenced=False)
    assert [e["seq"] for e in eventlog.read(stream, after_seq=2)] == [3, 4]
    assert eventlog.snapshot_text(eventlog.read(stream)) == "Hello world"


def test_terminal_event_shortens_the_log_retention(settings):
    settings.MOTHERSHIP_EVENT_LOG_TTL = 30
    chat, stream = uuid.uuid4(), uuid.uuid4()
    eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, 1, text="a"), fenced=False)
    assert get_redis().pttl(eventlog.log_key(stream)) > 3600 * 1000
    eventlog.append(chat_id=chat, stream_id=stream, event=_event(chat, stream, 2, type=events.COMPLETED), fenced=False)
    assert 0 < get_redis().pttl(eventlog.log_key(stream)) <= 30_000
