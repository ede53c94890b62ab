"""The socket's plumbing: authentication, frame validation, routing, error frames, group membership.

``mothership.consumers`` assembles the one consumer at ``/ws/`` from this base and each app's
handler mixin. Every client message is validated; a refused one gets ``{"type": "error",
"code", "message"}`` echoing ``conversationId`` / ``workspaceId`` / ``surfaceId`` when given, and the socket
stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time

import redis
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework.exceptions import Throttled

from mothership.infra import logs, metrics
from mothership.infra.groups import user_group
from mothership.infra.pubsub import channel_receiver, discard_channel
from mothership.infra.uuids import parse_uuid

logger = logging.getLogger(__name__)

# A larger frame is refused with an error frame and the socket stays open. Past the server's
# own limit (``mothership.processes.WS_MAX_BYTES``) the frame is never read into memory: the
# server closes the socket with 1009 ("message too big").
MAX_FRAME_BYTES = 64 * 1024


class ClientError(Exception):
    """A client message the server refuses: answered with an error frame, the socket stays open.
    ``fields``: more of the frame (a conflict's ``activeStreamId``)."""

    def __init__(self, code: str, message: str, **fields):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields


def require_uuid(content: dict, field: str) -> str:
    value = content.get(field)
    parsed = parse_uuid(value) if isinstance(value, str) else None
    if parsed is None:
        raise ClientError("bad_request", f"{field} must be a UUID string.")
    return str(parsed)


def request_id(content: dict) -> str | None:
    """A message's ``requestId`` (a string of at most 64 characters, echoed in its answer), or None."""
    value = content.get("requestId")
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


_YIELD_EVERY = 64  # messages a source hands over in a row before the loop's other tasks get a turn


async def _dispatch_serially(sources, dispatch) -> None:
    """What channels' ``await_many_dispatch`` does, without its two tasks and an ``asyncio.wait``
    per message (a fifth of a web process's fan-out CPU): a reader per source, each taking its
    next message once its last one was dispatched, the dispatches one at a time (a lock), in
    the order they were taken. Returns (raises) when a dispatch raises (``StopConsumer``)."""
    lock = asyncio.Lock()

    async def read(source) -> None:
        taken = 0
        while True:
            message = await source()
            async with lock:
                await dispatch(message)
            taken += 1
            if taken % _YIELD_EVERY == 0:  # a long backlog does not hold the loop
                await asyncio.sleep(0)

    loop = asyncio.get_running_loop()
    readers = [loop.create_task(read(source)) for source in sources]
    try:
        done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
        for reader in done:
            reader.result()  # its exception (a reader only ends by one)
    finally:
        for reader in readers:
            reader.cancel()
        for reader in readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


class _Allowance:
    """A token bucket: ``burst`` messages at once, refilled at ``rate`` a second."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _log_id(content: dict, field: str) -> str | None:
    """A message's id for its log lines: a UUID, else nothing (a client's junk never reaches the log)."""
    value = content.get(field)
    parsed = parse_uuid(value) if isinstance(value, str) and len(value) <= 64 else None
    return str(parsed) if parsed is not None else None


class SocketConsumer(AsyncJsonWebsocketConsumer):
    """Routes each client message to a handler named in ``routes`` (by type) or ``surfaces`` (by surfaceId, then type)."""

    routes: dict[str, str] = {}  # noqa: RUF012 (overridden per consumer, never mutated)
    surfaces: dict[str, dict[str, str]] = {}  # noqa: RUF012
    # Message types handled beside the socket's other messages (a send waits on the database).
    concurrent: frozenset[str] = frozenset()

    async def __call__(self, scope, receive, send):
        """Channels' ``AsyncConsumer.__call__`` with a leaner loop (``_dispatch_serially``): the
        socket's client messages and its channel-layer events, dispatched one at a time."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = channel_receiver(self.channel_layer, self.channel_name)
        self.base_send = send
        try:
            await _dispatch_serially((receive, self.channel_receive), self.dispatch)
        except StopConsumer:
            pass
        finally:
            await discard_channel(self.channel_layer, self.channel_name)

    def setup_state(self) -> None:
        """Per-connection state; handler mixins extend it (cooperatively, through super())."""
        self.groups_joined: set[str] = set()
        # What each subscription was granted on: group → (kind, id, the fields naming it in an
        # error frame), so a change of the user's access can be checked again (``mothership.access``).
        self.grants: dict[str, tuple[str, str, dict]] = {}
        self.allowance = _Allowance(settings.MOTHERSHIP_WS_MESSAGES_PER_SECOND, settings.MOTHERSHIP_WS_MESSAGE_BURST)
        self.closed_by_server = False  # close_for_good: nothing more is sent
        self.recheck_task: asyncio.Task | None = None
        self.handling: set[asyncio.Task] = set()  # the ``concurrent`` messages under way

    async def dispatch(self, message):
        """Channels' dispatch without its per-message ``close_old_connections`` thread hop.

        That hop costs a round trip through the one sync thread for every event at every
        socket; here every database access already goes through ``database_sync_to_async``,
        which closes stale connections around itself.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user = user
        logs.bind(user_id=user.pk)  # this socket's lines, all its life (its own task's context)
        self.setup_state()
        # How this socket was authenticated, checked again when the user's access changes.
        self.token_key = self.scope.get("auth_token")
        if "auth_session" in self.scope:  # a socket ticket asked for by a session
            self.session_key = self.scope["auth_session"]
        else:
            session = self.scope.get("session")
            self.session_key = None if self.token_key or session is None else session.session_key
        await self.join(user_group(user.pk))
        await self.accept()
        self.counted = True  # one of mothership_ws_connections until it disconnects
        metrics.gauge_add(metrics.WS_CONNECTIONS, 1)
        self.recheck_task = asyncio.get_running_loop().create_task(self._recheck_periodically())

    async def disconnect(self, code):
        # Closing a socket never stops a stream nor touches warming: it only leaves the groups.
        if getattr(self, "counted", False):
            self.counted = False
            metrics.gauge_add(metrics.WS_CONNECTIONS, -1)
        if getattr(self, "recheck_task", None) is not None:
            self.recheck_task.cancel()
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- access checked again on a timer -------------------------------------------------

    async def recheck_access(self) -> None:
        """Check again what this socket may hold (the composed consumer's); closes it when nothing."""

    async def _recheck_periodically(self) -> None:
        """``recheck_access`` every ``MOTHERSHIP_SOCKET_RECHECK_SECONDS``: a change no signal
        announced (``QuerySet.update``, a raw ``DELETE``) is seen within that period."""
        period = settings.MOTHERSHIP_SOCKET_RECHECK_SECONDS
        # The first wait is spread over the second half of a period: sockets that reconnect together
        # after a restart do not all query at the same moment.
        wait = period * random.uniform(0.5, 1.0)
        while not self.closed_by_server:
            await asyncio.sleep(wait)
            wait = period
            try:
                await self.recheck_access()
            except (OperationalError, InterfaceError):
                metrics.database_error("socket")
                # A database away is no reason to drop every socket: the next period checks again.
                logger.warning("socket access check: the database is unavailable; checking again in %.0f s", period)
            except Exception:
                logger.exception("socket access check failed; checking again in %.0f s", period)

    async def close_for_good(self, code: int) -> None:
        """Leave every group (no event reaches this socket any more), then close with ``code``."""
        self.closed_by_server = True
        for group in list(self.groups_joined):
            await self.leave(group)
        await self.close(code=code)

    async def send(self, text_data=None, bytes_data=None, close=False):
        if getattr(self, "closed_by_server", False):
            return  # an event dispatched after close_for_good: the socket said its last word
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def send_text(self, text: str) -> None:
        """``send(text_data=text)`` in one call: the fan-out's path, taken for every event at every socket."""
        if not self.closed_by_server:
            await self.base_send({"type": "websocket.send", "text": text})

    async def join(self, group: str, *, grant: tuple[str, str, dict] | None = None) -> None:
        """Join ``group``; ``grant`` is (``"chat"`` or ``"workspace"``, its id, the fields naming it)."""
        if grant is not None:
            self.grants[group] = grant
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def leave(self, group: str) -> None:
        self.grants.pop(group, None)
        if group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.groups_joined.discard(group)

    def joined(self, group: str) -> bool:
        return group in self.groups_joined

    async def layer_resubscribed(self, message: dict) -> None:
        """The channel layer lost Redis and has its subscriptions back (``mothership.infra.pubsub``):
        what was published meanwhile never arrived. Handler mixins catch up (through super())."""

    # --- client → server ---------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if not self.allowance.take():
            await self.send_error({}, "rate_limited", "Too many messages on this socket; slow down.")
            return
        if text_data is None:
            await self.send_error({}, "bad_frame", "Send JSON text frames.")
            return
        # In bytes, as the server counts them (a character is at most 4 bytes in UTF-8).
        if len(text_data) > MAX_FRAME_BYTES or (
            len(text_data) * 4 > MAX_FRAME_BYTES and len(text_data.encode()) > MAX_FRAME_BYTES
        ):
            await self.send_error({}, "too_large", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error({}, "bad_json", "The frame is not valid JSON.")
            return
        except RecursionError:
            await self.send_error({}, "bad_json", "The frame's JSON is nested too deeply.")
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self.send_error({}, "bad_request", "A message must be a JSON object.")
            return
        try:
            handler = self._handler_for(content)
        except ClientError as exc:
            await self.send_error(content, exc.code, exc.message, **exc.fields)
            return
        if content["type"] in self.concurrent and "surfaceId" not in content:
            # Beside the socket's other messages: its live events are not held up meanwhile.
            task = asyncio.get_running_loop().create_task(self._handle_beside(content, handler))
            self.handling.add(task)
            task.add_done_callback(self.handling.discard)
            return
        await self._handle(content, handler)

    async def _handle_beside(self, content: dict, handler) -> None:
        try:
            await self._handle(content, handler)
        except Exception:  # what would have closed the socket: here, said to the client
            logger.exception("socket message %s failed", content.get("type"))
            with contextlib.suppress(Exception):  # (the socket may be gone meanwhile)
                await self.send_error(content, "internal_error", "Something went wrong; try again.")

    async def _handle(self, content: dict, handler) -> None:
        """Run ``handler``; what it refuses (or what is away) becomes the message's error frame."""
        try:
            with logs.log_context(chat_id=_log_id(content, "conversationId"), stream_id=_log_id(content, "streamId")):
                logger.debug("socket message %s", handler.__name__)
                await handler(content)
        except ClientError as exc:
            await self.send_error(content, exc.code, exc.message, **exc.fields)
        except Http404:
            await self.send_error(content, "not_found", "No such conversation.")
        except PermissionDenied as exc:
            await self.send_error(content, "forbidden", str(exc) or "Not allowed.")
        except Throttled as exc:  # a per-user rate (mothership.infra.throttles)
            await self.send_error(content, "rate_limited", str(exc.detail))
        except redis.RedisError:
            metrics.redis_error("socket")
            logger.exception("redis error while handling %s", content.get("type"))
            await self.send_error(content, "unavailable", "The event store is unavailable; try again shortly.")
        except (OperationalError, InterfaceError):
            metrics.database_error("socket")
            logger.exception("database error while handling %s", content.get("type"))
            await self.send_error(content, "unavailable", "The database is unavailable; try again shortly.")

    def _handler_for(self, content: dict):
        kind = content.get("type")
        if not isinstance(kind, str):
            raise ClientError("bad_request", "type must be a string.")
        if "surfaceId" in content:
            surface = content["surfaceId"]
            routes = self.surfaces.get(surface) if isinstance(surface, str) else None
            if routes is None:
                raise ClientError("unknown_surface", f"Unknown surface {surface!r}.")
            if kind not in routes:
                raise ClientError("unknown_type", f"Unknown message type {kind!r} for surface {surface!r}.")
            return getattr(self, routes[kind])
        if kind not in self.routes:
            raise ClientError("unknown_type", f"Unknown message type {kind!r}.")
        return getattr(self, self.routes[kind])

    async def on_ping(self, content: dict) -> None:
        await self.send_json({"type": "pong"})

    async def send_error(self, content: dict, code: str, message: str, **fields) -> None:
        frame = {"type": "error", "code": code, "message": message, **fields}
        for field in ("conversationId", "workspaceId", "surfaceId"):
            if field in content:
                frame[field] = content[field]
        if request_id(content) is not None:  # the client's own name for what it asked
            frame["requestId"] = content["requestId"]
        await self.send_json(frame)
