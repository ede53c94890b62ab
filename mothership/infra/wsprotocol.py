"""The web server's WebSocket protocol: uvicorn's sans-I/O websockets protocol with bounded output.

uvicorn's protocols make the app's ``send`` wait while the transport's buffer is past its high
water mark. A socket whose client never reads then blocks its consumer for good, and every
event published to its groups piles up in the consumer's channel queue, which has no bound: one
such socket subscribed to a hundred chats held 20 MB of a web process. (The older ``websockets``
protocol also crashed its keepalive ping on such a socket, so it was never closed either.)

Here ``send`` never waits: every frame is written at once, so the consumer keeps reading its
queue. While the transport is past its high water mark, frames are held in one byte buffer of
the connection's own (``_Outbox``), written a chunk at a time as the transport drains: a transport
holding thousands of small writes costs several times their bytes (each is a write request of its
own), one buffer costs its length. Once what the client has not taken (that buffer and the
transport's) passes ``MOTHERSHIP_WS_SEND_BUFFER_BYTES`` and another frame is due, the socket is
closed with ``SLOW_CONSUMER`` (4008): the close frame goes out after what is buffered (a client
that is slow, not stalled, reads it and reconnects, resuming each stream after its last seq),
and the connection is dropped ``close_timeout`` seconds later if the client has not read that
far. A single frame larger than the bound is still sent when the buffer is empty (a replay
snapshot of a long conversation), so the bound never locks a client out.

Keepalive pings (``--ws-ping-interval`` / ``--ws-ping-timeout``) are written directly too, so
they work on slow sockets; a client that does not answer one in time is closed with 1011 and
dropped the same way.
"""

from __future__ import annotations

import logging

from django.conf import settings
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

logger = logging.getLogger(__name__)

SLOW_CONSUMER = 4008  # closed: the client did not read its output (DESIGN: a 4xxx code the page reconnects on)
SLOW_CONSUMER_REASON = "output not read"


_CHUNK = 64 * 1024  # what the outbox gives the transport at a time (uvloop's and asyncio's high water mark)


class _Outbox:
    """The transport as the protocol sees it: while the real one is past its high water mark
    (``paused``), writes are held, in order, in one buffer, and written on when it drains."""

    def __init__(self, transport):
        self.transport = transport
        self.held = bytearray()
        self.paused = False

    def write(self, data: bytes) -> None:
        if self.paused or self.held:
            self.held += data
        else:
            self.transport.write(data)

    def resume(self) -> None:
        """Write what is held, a chunk at a time, until the transport is past its mark again (it
        says so from inside ``write``): the transport never holds more than a chunk of it (a
        large write it holds whole until its last byte is sent)."""
        self.paused = False
        while self.held and not self.paused:
            chunk = bytes(self.held[:_CHUNK])
            del self.held[:_CHUNK]
            self.transport.write(chunk)

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + len(self.held)

    def close(self) -> None:
        if self.held and not self.transport.is_closing():
            data, self.held = bytes(self.held), bytearray()
            self.transport.write(data)  # closing flushes what the transport holds: the held part first
        self.transport.close()

    def abort(self) -> None:
        self.held = bytearray()
        self.transport.abort()

    def __getattr__(self, name):
        return getattr(self.transport, name)


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """``--ws mothership.infra.wsprotocol:BoundedWebSocketProtocol`` (``mothership.processes.web_argv``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.drop_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(_Outbox(transport))

    # Flow control is the bound below, not a wait: the app's send never blocks on a slow client.
    def pause_writing(self) -> None:
        self.transport.paused = True

    def resume_writing(self) -> None:
        self.transport.resume()

    async def send(self, message) -> None:
        if message["type"] in ("websocket.send", "websocket.close") and self.handshake_complete and not self.disconnected:
            if self.close_sent:
                return  # closing (slow, or a keepalive ping unanswered): nothing more is queued for it
            if self.transport.get_write_buffer_size() > settings.MOTHERSHIP_WS_SEND_BUFFER_BYTES:
                self._close_slow_consumer()
                return
        await super().send(message)
        if message["type"] == "websocket.close":
            self._drop_later()

    def _close_slow_consumer(self) -> None:
        unsent = self.transport.get_write_buffer_size()
        logger.warning(
            "socket %s: %d bytes not read by the client (MOTHERSHIP_WS_SEND_BUFFER_BYTES is %d); closing it with %d",
            f"{self.client[0]}:{self.client[1]}" if self.client else "?",
            unsent,
            settings.MOTHERSHIP_WS_SEND_BUFFER_BYTES,
            SLOW_CONSUMER,
        )
        if self.close_sent or self.transport.is_closing():
            return
        # The consumer leaves its groups at once: nothing more is published to it.
        self.queue.put_nowait({"type": "websocket.disconnect", "code": SLOW_CONSUMER, "reason": SLOW_CONSUMER_REASON})
        self.conn.send_close(SLOW_CONSUMER, SLOW_CONSUMER_REASON)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._drop_later()

    def keepalive_timeout(self) -> None:
        closing = self.close_sent or self.transport.is_closing()
        super().keepalive_timeout()
        if not closing:
            # uvicorn tells the app only once the connection is gone, which a client that does
            # not read delays until the drop: the consumer leaves its groups now.
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1011, "reason": "keepalive ping timeout"})
            self._drop_later()

    async def run_asgi(self) -> None:
        await super().run_asgi()
        self._drop_later()

    def _drop_later(self) -> None:
        """A closing connection whose client does not read would never flush (``transport.close``
        waits for the buffer): it is dropped after ``close_timeout`` whatever the client does."""
        if self.drop_timer is None and not self.disconnected:
            self.drop_timer = self.loop.call_later(self.close_timeout, self._drop)

    def _drop(self) -> None:
        if not self.disconnected:
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        if self.drop_timer is not None:
            self.drop_timer.cancel()
            self.drop_timer = None
        super().connection_lost(exc)
