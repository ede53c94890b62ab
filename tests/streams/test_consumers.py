from __future__ import annotations

import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from mothership.consumers import MothershipConsumer
from mothership.infra import groups
from streams import eventlog, events
from streams.models import Stream

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(user):
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


async def subscribed(user, chat) -> WebsocketCommunicator:
    communicator, _, _ = await connect(user)
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    assert (await communicator.receive_json_from(timeout=3))["type"] == "subscribed"
    return communicator


async def test_anonymous_socket_is_refused():
    communicator, connected, code = await connect(AnonymousUser())
    assert not connected
    assert code == 4401


@pytest.mark.parametrize(
    "frame, code",
    [
        ("{not json", "bad_json"),
        (json.dumps([1, 2]), "bad_request"),
        (json.dumps({"type": 5}), "bad_request"),
        (json.dumps({"type": "launch"}), "unknown_type"),
        (json.dumps({"type": "subscribe"}), "bad_request"),
        (json.dumps({"type": "subscribe", "conversationId": "x"}), "bad_request"),
        (json.dumps({"type": "subscribe", "conversationId": "00000000-0000-4000-8000-000000000000"}), "not_found"),
        (
            json.dumps(
                {"type": "stream.resume", "conversationId": str(uuid.uuid4()), "streamId": str(uuid.uuid4()), "afterSeq": -1}
            ),
            "bad_request",
        ),
        (
            json.dumps(
                {"type": "stream.resume", "conversationId": str(uuid.uuid4()), "streamId": str(uuid.uuid4()), "afterSeq": "3"}
            ),
            "bad_request",
        ),
        ("x" * 70_000, "too_large"),
        ('"' + "é" * 40_000 + '"', "too_large"),  # 40,002 characters, 80,002 bytes: the limit is in bytes
        ("[" * 30_000 + "]" * 30_000, "bad_json"),  # deeper than Python's JSON parser can follow
        ('{"type": "ping", "x": ' + "[" * 30_000 + "]" * 30_000 + "}", "bad_json"),
    ],
)
async def test_refused_messages_get_an_error_frame_and_the_socket_stays_open(user, frame, code):
    communicator, connected, _ = await connect(user)
    assert connected
    await communicator.send_to(text_data=frame)
    reply = await communicator.receive_json_from(timeout=3)
    assert reply["type"] == "error" and reply["code"] == code and reply["message"]
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from(timeout=3)) == {"type": "pong"}
    await communicator.disconnect()


async def test_error_frames_echo_conversation_and_surface(user):
    communicator, _, _ = await connect(user)
    conversation = str(uuid.uuid4())
    await communicator.send_json_to({"type": "subscribe", "surfaceId": "nope", "conversationId": conversation})
    reply = await communicator.receive_json_from(timeout=3)
    assert (reply["code"], reply["conversationId"], reply["surfaceId"]) == ("unknown_surface", conversation, "nope")
    await communicator.disconnect()


async def test_non_member_cannot_subscribe(chat, make_user):
    stranger = await database_sync_to_async(make_user)()
    communicator, _, _ = await connect(stranger)
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    reply = await communicator.receive_json_from(timeout=3)
    assert reply["code"] == "not_found" and reply["conversationId"] == str(chat.id)
    await communicator.disconnect()


def _append(chat_id, stream_id, seq, type=events.DELTA, **fields):
    eventlog.append(
        chat_id=chat_id,
        stream_id=stream_id,
        event=events.stream_event(type=type, chat_id=chat_id, stream_id=stream_id, seq=seq, **fields),
        fenced=False,
    )


async def _stream_with_log(chat, last_seq: int, status: str = "streaming") -> Stream:
    stream = await database_sync_to_async(Stream.objects.create)(chat=chat, provider="local", model="m", status=status)
    for seq in range(1, last_seq + 1):
        await database_sync_to_async(_append)(chat.id, stream.id, seq, text=f"t{seq}")
    return stream


async def test_subscriber_receives_live_events_and_a_lost_one_is_filled_from_the_log(user, chat):
    communicator = await subscribed(user, chat)
    stream_id = uuid.uuid4()
    await database_sync_to_async(_append)(chat.id, stream_id, 1, type=events.STARTED)
    await database_sync_to_async(_append)(chat.id, stream_id, 2, text="a")
    # seq 3 is in the log but its live message is lost (at-most-once delivery).
    await database_sync_to_async(eventlog.get_redis().xadd)(
        eventlog.log_key(stream_id),
        {"e": json.dumps(events.stream_event(type=events.DELTA, chat_id=chat.id, stream_id=stream_id, seq=3, text="b"))},
        id="3-0",
    )
    await database_sync_to_async(_append)(chat.id, stream_id, 4, text="c")
    received = [await communicator.receive_json_from(timeout=3) for _ in range(4)]
    assert [e["seq"] for e in received] == [1, 2, 3, 4]
    assert all(e["conversationId"] == str(chat.id) and e["streamId"] == str(stream_id) for e in received)
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_resume_replays_after_the_cursor_then_forwards_only_newer_events(user, chat):
    stream = await _stream_with_log(chat, 5)
    communicator, _, _ = await connect(user)
    await communicator.send_json_to(
        {"type": "stream.resume", "conversationId": str(chat.id), "streamId": str(stream.id), "afterSeq": 2}
    )
    replayed = [await communicator.receive_json_from(timeout=3) for _ in range(3)]
    assert [e["seq"] for e in replayed] == [3, 4, 5]
    await database_sync_to_async(_append)(chat.id, stream.id, 6, type=events.COMPLETED, message_id=None, partial=False)
    assert (await communicator.receive_json_from(timeout=3))["seq"] == 6
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_resume_on_the_same_socket_replays_events_it_already_carried(user, chat):
    """A page drops events of a stream it does not know yet, then asks for them by resume."""
    stream = await database_sync_to_async(Stream.objects.create)(chat=chat, provider="local", model="m", status="streaming")
    communicator, _, _ = await connect(user)
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    await communicator.receive_json_from(timeout=3)
    for seq in range(1, 4):
        await database_sync_to_async(_append)(chat.id, stream.id, seq, text=f"t{seq}")
    assert [(await communicator.receive_json_from(timeout=3))["seq"] for _ in range(3)] == [1, 2, 3]

    await communicator.send_json_to(
        {"type": "stream.resume", "conversationId": str(chat.id), "streamId": str(stream.id), "afterSeq": 0}
    )

    assert [(await communicator.receive_json_from(timeout=3))["seq"] for _ in range(3)] == [1, 2, 3]
    await database_sync_to_async(_append)(chat.id, stream.id, 4, text="t4")
    assert (await communicator.receive_json_from(timeout=3))["seq"] == 4
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_resume_with_a_cursor_older_than_the_log_gets_replay_gap_and_snapshot(user, chat):
    stream = await database_sync_to_async(Stream.objects.create)(chat=chat, provider="local", model="m", status="completed")
    communicator, _, _ = await connect(user)
    await communicator.send_json_to(
        {"type": "stream.resume", "conversationId": str(chat.id), "streamId": str(stream.id), "afterSeq": 7}
    )
    reply = await communicator.receive_json_from(timeout=3)
    assert reply["type"] == events.REPLAY_GAP
    assert reply["snapshot"]["id"] == str(chat.id)
    # The client has up to 7: an older event delivered late is not sent again.
    late = events.stream_event(type=events.DELTA, chat_id=chat.id, stream_id=stream.id, seq=5, text="late")
    await database_sync_to_async(groups.publish)(groups.chat_group(chat.id), events.group_message(late))
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_resume_of_a_stream_from_another_chat_is_refused(user, chat, workspace):
    from chats.services import chat_create

    other = await database_sync_to_async(chat_create)(workspace=workspace, title="other")
    stream = await database_sync_to_async(Stream.objects.create)(chat=other, provider="local", model="m")
    communicator, _, _ = await connect(user)
    await communicator.send_json_to(
        {"type": "stream.resume", "conversationId": str(chat.id), "streamId": str(stream.id), "afterSeq": 0}
    )
    reply = await communicator.receive_json_from(timeout=3)
    assert (reply["code"], reply["message"]) == ("not_found", "No such stream in this conversation.")
    await communicator.disconnect()


async def test_resume_without_after_seq_replays_the_whole_log(user, chat):
    stream = await _stream_with_log(chat, 3)
    communicator, _, _ = await connect(user)
    await communicator.send_json_to({"type": "stream.resume", "conversationId": str(chat.id), "streamId": str(stream.id)})
    assert [(await communicator.receive_json_from(timeout=3))["seq"] for _ in range(3)] == [1, 2, 3]
    await communicator.disconnect()


async def _resume(communicator, chat, stream, after_seq: int) -> None:
    await communicator.send_json_to(
        {"type": "stream.resume", "conversationId": str(chat.id), "streamId": str(stream.id), "afterSeq": after_seq}
    )


@pytest.mark.parametrize(
    "after_seq, expected",
    [
        (1, "gap"),
        (3, "gap"),  # 4 was trimmed: the client cannot be caught up from the log
        (4, [5, 6, 7]),  # the log starts right after what the client has: no gap
        (5, [6, 7]),
    ],
)
async def test_resume_against_a_trimmed_log_says_gap_exactly_when_events_are_missing(user, chat, after_seq, expected):
    stream = await _stream_with_log(chat, 7)
    await database_sync_to_async(eventlog.get_redis().xtrim)(eventlog.log_key(stream.id), minid="5-0", approximate=False)
    communicator, _, _ = await connect(user)

    await _resume(communicator, chat, stream, after_seq)

    if expected == "gap":
        reply = await communicator.receive_json_from(timeout=3)
        assert reply["type"] == events.REPLAY_GAP, reply
        assert (reply["afterSeq"], reply["streamId"]) == (after_seq, str(stream.id)), reply
        # The snapshot stands for everything the log holds: an old live event is not sent again.
        late = events.stream_event(type=events.DELTA, chat_id=chat.id, stream_id=stream.id, seq=7, text="t7 delivered late")
        await database_sync_to_async(groups.publish)(groups.chat_group(chat.id), events.group_message(late))
        await database_sync_to_async(_append)(chat.id, stream.id, 8, text="t8")
        assert [(await communicator.receive_json_from(timeout=3))["seq"]] == [8]
    else:
        assert [(await communicator.receive_json_from(timeout=3))["seq"] for _ in expected] == expected
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_resume_from_nothing_of_a_stream_that_wrote_nothing_yet_sends_nothing(user, chat):
    stream = await database_sync_to_async(Stream.objects.create)(chat=chat, provider="local", model="m", status="queued")
    communicator, _, _ = await connect(user)
    await _resume(communicator, chat, stream, 0)
    assert await communicator.receive_nothing(timeout=0.3)
    await database_sync_to_async(_append)(chat.id, stream.id, 1, type=events.STARTED)
    assert (await communicator.receive_json_from(timeout=3))["seq"] == 1
    await communicator.disconnect()


async def test_after_unsubscribe_no_event_of_that_chat_arrives(user, chat):
    communicator = await subscribed(user, chat)
    stream_id = uuid.uuid4()
    await database_sync_to_async(_append)(chat.id, stream_id, 1, type=events.STARTED)
    assert (await communicator.receive_json_from(timeout=3))["seq"] == 1

    await communicator.send_json_to({"type": "unsubscribe", "conversationId": str(chat.id)})
    assert (await communicator.receive_json_from(timeout=3)) == {"type": "unsubscribed", "conversationId": str(chat.id)}
    await database_sync_to_async(_append)(chat.id, stream_id, 2, text="not for this socket")

    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})  # and it can join again
    assert (await communicator.receive_json_from(timeout=3))["type"] == "subscribed"
    await database_sync_to_async(_append)(chat.id, stream_id, 3, text="again")
    assert [(await communicator.receive_json_from(timeout=3))["seq"] for _ in range(2)] == [2, 3]  # the hole filled
    await communicator.disconnect()
