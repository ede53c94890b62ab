"""``message.send`` on the socket the page holds: what ``POST …/messages`` does, answered
``message.sent`` with the ``requestId``, and every refusal an error frame naming it (the socket
stays open, nothing is written). The real consumer, the real channel layer and Redis; the turns stay
queued (no worker: ``tests/e2e/test_socket_send.py`` runs them)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator

from chats.models import Message
from mothership.consumers import MothershipConsumer
from mothership.infra.throttles import SCOPES, user_rate_reset
from spend.services import budget_set
from streams import locks
from streams.models import Stream
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


async def _socket(user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    return communicator


async def _ask(socket, **message) -> dict:
    await socket.send_json_to({"type": "message.send", **message})
    return await socket.receive_json_from(timeout=10)


@pytest.fixture
def limits(settings, user):
    for scope in SCOPES:
        user_rate_reset(scope=scope, user=user)
    return settings


async def test_a_message_sent_on_the_socket_starts_the_turn_and_names_it(user, chat, turns_not_enqueued):
    socket = await _socket(user)
    answer = await _ask(socket, conversationId=str(chat.id), content="  hello there  ", requestId="r-1")

    assert answer["type"] == "message.sent" and answer["requestId"] == "r-1"
    assert answer["conversationId"] == str(chat.id)
    stream = await database_sync_to_async(Stream.objects.select_related("user_message").get)(pk=answer["streamId"])
    assert stream.chat_id == chat.id and stream.started_by_id == user.pk and stream.status == "queued"
    assert str(stream.user_message_id) == answer["userMessageId"] and str(stream.assistant_message_id) == answer["messageId"]
    assert stream.user_message.content == "hello there"  # trimmed, as the HTTP API trims it
    assert turns_not_enqueued == [answer["streamId"]]  # handed to the turn queue
    assert locks.lock_owner(chat_id=chat.id) == answer["streamId"]

    # Without a requestId, the answer simply has none.
    other = await database_sync_to_async(factories.ChatFactory)(workspace=chat.workspace)
    plain = await _ask(socket, conversationId=str(other.id), content="hi")
    assert plain["type"] == "message.sent" and "requestId" not in plain
    await socket.disconnect()


@pytest.mark.parametrize(
    "message, code, words",
    [
        ({"content": ""}, "bad_request", "Write a message or attach a file."),
        ({"content": 5}, "bad_request", "content: Must be a string."),
        ({}, "bad_request", "content"),
        # A long message (up to the API's 100,000 characters) is past a frame: the page posts it instead.
        ({"content": "x" * 70_000}, "too_large", "65536 bytes"),
        ({"content": "hi", "attachments": "nope"}, "bad_request", "attachments"),
        ({"content": "hi", "attachments": ["not-a-uuid"]}, "bad_request", "attachments"),
        ({"content": "hi", "interrupt": 7}, "bad_request", "interrupt"),
        ({"content": "hi", "requestId": "x" * 65}, "bad_request", "requestId"),
        ({"content": "hi", "requestId": 12}, "bad_request", "requestId"),
    ],
)
async def test_a_malformed_send_is_refused_by_name_and_writes_nothing(user, chat, turns_not_enqueued, message, code, words):
    socket = await _socket(user)
    answer = await _ask(socket, conversationId=str(chat.id), **message)
    assert answer["type"] == "error" and answer["code"] == code and words in answer["message"], answer
    assert answer.get("conversationId", str(chat.id)) == str(chat.id)
    assert not await database_sync_to_async(Message.objects.filter(chat=chat).exists)()
    assert turns_not_enqueued == [] and locks.lock_owner(chat_id=chat.id) is None
    # The socket stays open and serves the next message.
    assert (await _ask(socket, conversationId=str(chat.id), content="now right", requestId="ok"))["type"] == "message.sent"
    await socket.disconnect()


async def test_a_non_member_gets_not_found_whatever_the_message_says(user, make_user, chat, turns_not_enqueued):
    stranger = await database_sync_to_async(make_user)("stranger")
    socket = await _socket(stranger)
    for message in ({"content": "hi"}, {"content": ""}, {"content": 5}):
        answer = await _ask(socket, conversationId=str(chat.id), requestId="q", **message)
        assert (answer["type"], answer["code"], answer["requestId"]) == ("error", "not_found", "q")
    answer = await _ask(socket, conversationId=str(uuid.uuid4()), content="hi")
    assert answer["code"] == "not_found"
    answer = await _ask(socket, conversationId="not-a-uuid", content="hi")
    assert answer["code"] == "bad_request"
    assert not await database_sync_to_async(Message.objects.exists)()
    await socket.disconnect()


async def test_a_second_send_while_a_turn_runs_is_a_conflict_naming_the_live_turn(user, chat, turns_not_enqueued):
    socket = await _socket(user)
    first = await _ask(socket, conversationId=str(chat.id), content="one")
    answer = await _ask(socket, conversationId=str(chat.id), content="two", requestId="again")
    assert (answer["type"], answer["code"], answer["requestId"]) == ("error", "conflict", "again")
    assert answer["activeStreamId"] == first["streamId"] and "already streaming" in answer["message"]
    # A stale interrupt (not the live turn) stops nothing either.
    answer = await _ask(socket, conversationId=str(chat.id), content="two", interrupt=str(uuid.uuid4()))
    assert answer["code"] == "conflict" and answer["activeStreamId"] == first["streamId"]
    assert await database_sync_to_async(Message.objects.filter(chat=chat, content="two").count)() == 0
    assert locks.lock_owner(chat_id=chat.id) == first["streamId"]
    await socket.disconnect()


async def test_stop_and_send_on_the_socket_stops_exactly_that_turn(user, chat, turns_not_enqueued):
    socket = await _socket(user)
    first = await _ask(socket, conversationId=str(chat.id), content="one")
    answer = await _ask(socket, conversationId=str(chat.id), content="instead", interrupt=first["streamId"])
    assert answer["type"] == "message.sent" and answer["streamId"] != first["streamId"]
    stopped = await database_sync_to_async(Stream.objects.get)(pk=first["streamId"])
    assert (stopped.status, stopped.reason) == ("cancelled", "user")
    assert locks.lock_owner(chat_id=chat.id) == answer["streamId"]
    await socket.disconnect()


async def test_another_members_turn_is_not_interrupted_from_the_socket(user, make_user, workspace, chat, turns_not_enqueued):
    member = await database_sync_to_async(make_user)("bob")
    await database_sync_to_async(factories.MembershipFactory)(user=member, workspace=workspace)
    mine = await _ask(await _socket(user), conversationId=str(chat.id), content="mine")
    socket = await _socket(member)
    answer = await _ask(socket, conversationId=str(chat.id), content="theirs", interrupt=mine["streamId"])
    assert answer["type"] == "error" and answer["code"] == "forbidden"
    stream = await database_sync_to_async(Stream.objects.get)(pk=mine["streamId"])
    assert stream.status == "queued"  # not stopped
    await socket.disconnect()


async def test_the_senders_limits_hold_on_the_socket_as_over_http(limits, user, workspace, turns_not_enqueued):
    limits.MOTHERSHIP_SEND_RATE = "2/min"
    chats = [await database_sync_to_async(factories.ChatFactory)(workspace=workspace) for _ in range(3)]
    socket = await _socket(user)
    assert [(await _ask(socket, conversationId=str(c.id), content="hi"))["type"] for c in chats[:2]] == ["message.sent"] * 2
    answer = await _ask(socket, conversationId=str(chats[2].id), content="hi")
    assert answer["code"] == "rate_limited" and answer["message"].startswith("Too many messages sent.")

    limits.MOTHERSHIP_SEND_RATE = "100/min"
    limits.MOTHERSHIP_MAX_CONCURRENT_TURNS = 2
    answer = await _ask(socket, conversationId=str(chats[2].id), content="hi")
    assert answer["code"] == "too_many_turns" and "2 replies running" in answer["message"]

    limits.MOTHERSHIP_MAX_CONCURRENT_TURNS = 100
    await database_sync_to_async(budget_set)(workspace_id=workspace.pk, monthly_usd=Decimal("0"), member_daily_usd=None)
    answer = await _ask(socket, conversationId=str(chats[2].id), content="hi")
    assert answer["code"] == "budget_exceeded"
    assert not await database_sync_to_async(Message.objects.filter(chat=chats[2]).exists)()
    assert locks.lock_owner(chat_id=chats[2].pk) is None
    await socket.disconnect()


async def test_an_upload_of_another_chat_is_refused_with_the_apis_code(user, workspace, chat, turns_not_enqueued):
    socket = await _socket(user)
    missing = str(uuid.uuid4())
    answer = await _ask(socket, conversationId=str(chat.id), content="see", attachments=[missing])
    assert (answer["type"], answer["code"]) == ("error", "attachment_refused")  # the HTTP API's 400 code
    assert answer["message"].startswith(f"No such file in this conversation: {missing}")
    assert not await database_sync_to_async(Message.objects.filter(chat=chat).exists)()
    await socket.disconnect()


async def test_sends_at_once_give_their_database_connections_back(user, workspace, turns_not_enqueued):
    """Each send runs in a thread of the loop's pool: on PostgreSQL its pooled connection goes back
    when it ends (else a web process's pool runs dry after a few bursts and every request waits)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("connections are pooled on PostgreSQL only (a SQLite thread keeps its own)")

    def checked_out() -> int:  # the process's pooled connections in use now
        stats = connection.pool.get_stats()
        return stats["pool_size"] - stats.get("pool_available", 0)

    chats = [await database_sync_to_async(factories.ChatFactory)(workspace=workspace) for _ in range(12)]
    sockets = [await _socket(user) for _ in chats]
    before = await database_sync_to_async(checked_out)()
    answers = await asyncio.gather(*(_ask(s, conversationId=str(c.id), content="at once") for s, c in zip(sockets, chats)))
    assert [a["type"] for a in answers] == ["message.sent"] * len(chats)
    # Each send's thread held one until the pool ran dry (7 more here); one of slack for a thread of
    # another test that takes a connection meanwhile.
    assert await database_sync_to_async(checked_out)() <= before + 1
    for socket in sockets:
        await socket.disconnect()
