"""Request bodies capped before Django stores them (an ASGI middleware).

Django's ASGI handler copies a whole body to a temporary file before any view runs, so a view
can refuse a 2 GB upload only after it is on disk. Here a body is measured as it arrives: one
that says (``Content-Length``) or turns out to be larger than its path allows is answered 413
at once, and what arrived of it is dropped. Each path's limit is its file's limit plus room for
the multipart envelope; every other body gets the largest of them.

A chunked body (no ``Content-Length``) is read here first, up to the limit, into a file that
spills to disk: Django reads only as many bytes as ``Content-Length`` says, so without one it
would see an empty body. It then gets the body with its length.

A refusal is sent whole at once, and then the rest of the refused body is read and dropped, for
at most ``LINGER_SECONDS``, before the connection closes. Most clients write their whole body
before they read a response; a socket closed with their bytes unread is reset, and a reset can
throw away the 413 they have not read yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
from collections.abc import Callable

logger = logging.getLogger(__name__)

ENVELOPE = 64 * 1024  # a multipart body's boundaries, headers and other fields
SPOOL_MEMORY = 1024 * 1024  # a chunked body's first bytes kept in memory; the rest goes to disk
REPLAY_CHUNK = 256 * 1024
LINGER_SECONDS = 5.0  # how long the rest of a refused body is read and dropped before the connection closes


class RequestBodyLimit:
    def __init__(self, app, *, limits: list[tuple[re.Pattern, Callable[[], int]]], default: Callable[[], int]):
        self.app = app
        self.limits = limits
        self.default = default

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.limits:
            if pattern.match(path):
                return limit() + ENVELOPE
        return self.default() + ENVELOPE

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        declared = next((value for name, value in scope.get("headers") or () if name == b"content-length"), None)
        try:
            declared_size = int(declared) if declared is not None else None
        except ValueError:
            declared_size = None
        if declared_size is not None and declared_size > limit:
            logger.warning(
                "%s %s: body of %d bytes refused (larger than %d): 413", scope["method"], scope["path"], declared_size, limit
            )
            return await _refuse(send, receive, limit)
        if declared is None and _chunked(scope):
            return await self._chunked_body(scope, receive, send, limit)
        received = 0
        cut = False
        body_done = False
        started = False

        async def counted_receive():
            nonlocal received, cut, body_done
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    cut = True  # the app sees the client go away; its partial body is dropped
                    logger.warning("%s %s: body past %d bytes refused: 413", scope["method"], scope["path"], limit)
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, watched_send)
        if cut and not started:
            await _refuse(send, receive, limit, body_done=body_done)

    async def _chunked_body(self, scope, receive, send, limit: int):
        """Read the whole chunked body (413 once it passes ``limit``), then hand it to the app with its length."""
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client went away mid-body: nobody to answer
                body = message.get("body", b"")
                size += len(body)
                if size > limit:
                    logger.warning("%s %s: chunked body past %d bytes refused: 413", scope["method"], scope["path"], limit)
                    return await _refuse(send, receive, limit, body_done=not message.get("more_body", False))
                spool.write(body)
                if not message.get("more_body", False):
                    break
            spool.seek(0)
            headers = [(name, value) for name, value in scope["headers"] if name != b"transfer-encoding"]
            headers.append((b"content-length", str(size).encode()))
            replayed = False

            async def replay():
                nonlocal replayed
                if replayed:
                    return await receive()  # after the body: the client's disconnect, when it comes
                chunk = spool.read(REPLAY_CHUNK)
                replayed = spool.tell() >= size
                return {"type": "http.request", "body": chunk, "more_body": not replayed}

            await self.app({**scope, "headers": headers}, replay, send)


def _chunked(scope) -> bool:
    return any(name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in scope.get("headers") or ())


async def _refuse(send, receive, limit: int, *, body_done: bool = False) -> None:
    """Send the whole 413 at once, then read and drop the rest of the body (for ``LINGER_SECONDS``
    at most) before the response is completed and the connection closes."""
    body = json.dumps({"detail": f"The request body is larger than the {limit - ENVELOPE} bytes this address takes."}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": True})  # all of it: the client can read it now
    if not body_done:
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while True:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        break
        except TimeoutError:
            pass  # a client still sending after this long is cut off
    await send({"type": "http.response.body", "body": b""})
