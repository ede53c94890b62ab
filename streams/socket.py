"""The socket's stream handlers: chat subscriptions, gapless resume, and live stream events.

A mixin of the one consumer (``mothership.consumers``). Live delivery is at-most-once; the
per-stream log plus ``seq`` make what a socket sends gapless and duplicate-free.
"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import close_old_connections

from chats.attachments import AttachmentRefused
from chats.models import Chat
from chats.selectors import chat_get_for_member, user_is_member
from mothership.infra import metrics
from mothership.infra.groups import chat_group
from mothership.infra.socket import ClientError, request_id, require_uuid
from spend.services import BudgetExceeded
from streams import eventlog, events
from streams.api.serializers import MessageSendInput
from streams.selectors import stream_in_chat
from streams.services import CannotAnswerAgain, StreamConflict, TooManyTurns, message_send

_SEND_FIELDS = ("content", "interrupt", "attachments")
_sending: asyncio.Semaphore | None = None


def _send_slots() -> asyncio.Semaphore:
    """The sends a web process runs at once: ``MOTHERSHIP_WEB_REQUEST_CONCURRENCY``, as its requests."""
    global _sending
    if _sending is None:  # made on the server's own loop
        _sending = asyncio.Semaphore(settings.MOTHERSHIP_WEB_REQUEST_CONCURRENCY)
    return _sending


def _send_closing(**kwargs) -> dict:
    """``send_message`` in a thread of the loop's pool, its database connection given back (or kept,
    where connections persist: SQLite) before the thread returns. Closed here, in the call itself:
    channels' close around a call outside its one sync thread does not reach it, and on PostgreSQL
    each send kept a pooled connection until the pool ran dry."""
    close_old_connections()
    try:
        return send_message(**kwargs)
    finally:
        close_old_connections()


def _validation_message(detail) -> str:
    """The first sentence of a serializer's errors, named by its field."""
    if isinstance(detail, dict):
        field, errors = next(iter(detail.items()))
        inner = _validation_message(errors)
        return inner if field == "non_field_errors" or inner.startswith(f"{field}") else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _validation_message(detail[0])
    return str(detail)


def send_message(*, user, chat_id: str, content: dict) -> dict:
    """A ``message.send``, in a thread: the member's chat (``Http404``), the message's fields (as
    ``POST …/messages`` reads them), then ``message_send``; its refusals as ``ClientError`` codes
    (what the HTTP API answers with a status: ``conflict`` 409, ``too_many_turns`` 429,
    ``budget_exceeded`` 402, an attachment's own code)."""
    chat = chat_get_for_member(user=user, chat_id=chat_id)
    payload = MessageSendInput(data={field: content[field] for field in _SEND_FIELDS if field in content})
    if not payload.is_valid():
        raise ClientError("bad_request", _validation_message(payload.errors))
    sent = payload.validated_data
    try:
        turn = message_send(
            chat=chat,
            user=user,
            content=sent["content"],
            attachment_ids=sent.get("attachments") or (),
            interrupt=sent.get("interrupt"),
        )
    except StreamConflict as exc:
        live = str(exc.active_stream_id) if exc.active_stream_id else None
        raise ClientError("conflict", str(exc), activeStreamId=live) from None
    except CannotAnswerAgain as exc:
        raise ClientError("conflict", str(exc), activeStreamId=None) from None
    except TooManyTurns as exc:
        raise ClientError("too_many_turns", str(exc)) from None
    except BudgetExceeded as exc:
        raise ClientError(BudgetExceeded.code, str(exc)) from None
    except AttachmentRefused as exc:
        raise ClientError(exc.code, exc.detail) from None
    except Chat.DoesNotExist:
        raise ClientError("not_found", "No such conversation.") from None
    return {
        "streamId": str(turn.stream.id),
        "messageId": str(turn.assistant_message.id),
        "userMessageId": str(turn.user_message.id),
    }


class StreamSocket:
    def setup_state(self) -> None:
        super().setup_state()
        # Per stream: the highest seq this socket has sent (no duplicate, no gap).
        self.cursors: dict[str, int] = {}
        self.finished: set[str] = set()  # streams whose terminal event this socket sent

    def replay_snapshot(self, user, chat_id) -> dict:
        """The chat's full snapshot for ``stream.replay_gap`` (sync; provided by the composed consumer)."""
        raise NotImplementedError

    async def join_chat(self, chat_id: str) -> None:
        if not await database_sync_to_async(user_is_member)(user=self.user, chat_id=chat_id):
            raise ClientError("not_found", "No such conversation.")
        await self.join(chat_group(chat_id), grant=("chat", chat_id, {"conversationId": chat_id}))

    async def on_chat_subscribe(self, content: dict) -> None:
        chat_id = require_uuid(content, "conversationId")
        await self.join_chat(chat_id)
        await self.send_json({"type": "subscribed", "conversationId": chat_id})

    async def on_message_send(self, content: dict) -> None:
        """Send a message over the socket the page holds (authenticated once): what ``POST
        …/messages`` does, answered ``message.sent`` (or an error frame) with the ``requestId``."""
        chat_id = require_uuid(content, "conversationId")
        if "requestId" in content and request_id(content) is None:
            raise ClientError("bad_request", "requestId must be a string of 1 to 64 characters.")
        # Beside the process's one thread for the sockets' other database work, a few at a time, as
        # requests are (a burst's sends would otherwise queue behind one another in that thread).
        async with _send_slots():
            sent = await sync_to_async(_send_closing, thread_sensitive=False)(user=self.user, chat_id=chat_id, content=content)
        answer = {"type": "message.sent", "conversationId": chat_id, **sent}
        if request_id(content) is not None:
            answer["requestId"] = content["requestId"]
        await self.send_json(answer)

    async def on_chat_unsubscribe(self, content: dict) -> None:
        chat_id = require_uuid(content, "conversationId")
        await self.leave(chat_group(chat_id))
        await self.send_json({"type": "unsubscribed", "conversationId": chat_id})

    async def on_resume(self, content: dict) -> None:
        chat_id = require_uuid(content, "conversationId")
        stream_id = require_uuid(content, "streamId")
        after_seq = content.get("afterSeq", 0)
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise ClientError("bad_request", "afterSeq must be a non-negative integer.")
        # Join the group before reading the log: anything published after the read is queued here.
        await self.join_chat(chat_id)
        if not await database_sync_to_async(stream_in_chat)(chat_id=chat_id, stream_id=stream_id):
            raise ClientError("not_found", "No such stream in this conversation.")
        log = await eventlog.aread(stream_id)
        retained_from = log[0]["seq"] if log else None
        if after_seq > 0 and (retained_from is None or retained_from > after_seq + 1):
            await self.send_json(
                {
                    "type": events.REPLAY_GAP,
                    "conversationId": chat_id,
                    "streamId": stream_id,
                    "afterSeq": after_seq,
                    "snapshot": await database_sync_to_async(self.replay_snapshot)(self.user, chat_id),
                }
            )
            self.cursors[stream_id] = max((e["seq"] for e in log), default=after_seq)
            return
        # The client says what it has: replay everything after that, even events this socket
        # already carried (a page may drop events of a stream it did not know yet).
        self.cursors[stream_id] = after_seq
        for event in log:
            await self._forward(event)

    # --- server → client ---------------------------------------------------------------

    async def stream_event(self, message: dict) -> None:
        """A live event from the chat's group: forwarded as the worker encoded it, never re-encoded."""
        if not self.joined(chat_group(message["conversationId"])):
            return
        stream_id, seq = message["streamId"], message["seq"]
        cursor = self.cursors.get(stream_id)
        if cursor is not None and seq > cursor + 1:
            # Live delivery is at-most-once: fill a hole from the log before going on.
            for missed in await eventlog.aread(stream_id, after_seq=cursor):
                if missed["seq"] >= seq:
                    break
                await self._forward(missed)
        if self._advance(stream_id, seq):
            await self.send_text(message["text"])
            if "at" in message:  # appended at the worker at this epoch ms (streams.eventlog)
                metrics.observe(metrics.DELIVERY_LAG, max(0.0, time.time() - message["at"] / 1000))

    async def layer_resubscribed(self, message: dict) -> None:
        """Back from a Redis restart: every event of a followed stream published while the layer
        was away (a stream's last events, its terminal one, have no later event to reveal the
        hole) is sent from the log, after the socket's cursor."""
        for stream_id, cursor in list(self.cursors.items()):
            if stream_id not in self.finished:
                for event in await eventlog.aread(stream_id, after_seq=cursor):
                    if self.joined(chat_group(event["conversationId"])):
                        await self._forward(event)
        await super().layer_resubscribed(message)

    async def _forward(self, event: dict) -> None:
        if self._advance(event["streamId"], event["seq"]):
            if event["type"] in events.TERMINAL_TYPES:
                self.finished.add(event["streamId"])
            await self.send_json(event)

    def _advance(self, stream_id: str, seq: int) -> bool:
        """Move the stream's cursor to ``seq``; False when this socket already sent it (no duplicate)."""
        cursor = self.cursors.get(stream_id)
        if cursor is not None and seq <= cursor:
            return False
        self.cursors[stream_id] = seq
        return True
