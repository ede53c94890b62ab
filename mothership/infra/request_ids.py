"""Each request's id, in its log lines and in its response's ``X-Request-ID`` header.

``RequestIdMiddleware`` (ASGI, outermost: ``mothership.asgi``) takes a well-formed incoming
``X-Request-ID`` (1 to 64 of ``A-Z a-z 0-9 . _ -``, as a proxy's ``$request_id`` or a client's
UUID) or makes one (a UUID), puts it in the log context for the whole request or socket (the web
server's access and handshake lines included, which it logs from inside ``send``) and echoes it in
the HTTP response. Taken from anyone, as Rails and Heroku's router do: it only correlates lines,
so a client that sets its own gains nothing; one that is malformed or too long is replaced, never
logged.

``RequestUserMiddleware`` (Django, after authentication) lets each line say ``user_id`` once the
request's user is known (read lazily: logging never loads a user itself).
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

from django.core.signals import request_finished
from django.dispatch import receiver
from django.utils.functional import LazyObject, empty

from mothership.infra import logs

HEADER = b"x-request-id"
MAX_CHARS = 64
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._-]{1,%d}" % MAX_CHARS)


def request_id_from(headers) -> str:
    """The request's id: its well-formed ``X-Request-ID`` (the first), else a new UUID."""
    for name, value in headers:
        if name.lower() == HEADER:
            if _WELL_FORMED.fullmatch(value):
                return value.decode("ascii")
            break
    return str(uuid.uuid4())


class RequestIdMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        request_id = request_id_from(scope.get("headers") or ())
        if scope["type"] == "websocket":
            # Not echoed: a wrapped send would cost a call for every frame the fan-out sends, and a
            # browser cannot read a handshake's headers anyway. Its lines carry the id.
            with logs.log_context(request_id=request_id):
                return await self.app(scope, receive, send)
        echoed = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        with logs.log_context(request_id=request_id):
            return await self.app(scope, receive, send_with_id)


_request: contextvars.ContextVar = contextvars.ContextVar("mothership_log_request", default=None)


def _user_id(request) -> str | None:
    """The request's user's id if authentication has resolved it (Django's lazy user, or the user
    DRF set), without resolving it."""
    user = request.__dict__.get("user")
    if user is None:
        return None
    wrapped = user._wrapped if isinstance(user, LazyObject) else user
    if wrapped is empty or not getattr(wrapped, "is_authenticated", False):
        return None
    return str(wrapped.pk)


class RequestUserFilter(logging.Filter):
    """Adds ``user_id`` to the lines of a request whose user is known."""

    def filter(self, record) -> bool:
        request = _request.get()
        if request is not None and not hasattr(record, "user_id"):
            user_id = _user_id(request)
            if user_id is not None:
                record.user_id = user_id
        return True


def RequestUserMiddleware(get_response):  # noqa: N802 (Django's middleware factory)
    def middleware(request):
        # Not reset on the way out: Django logs a 4xx or 5xx answer after the chain returns
        # (``request_finished`` forgets it).
        _request.set(request)
        return get_response(request)

    return middleware


@receiver(request_finished, dispatch_uid="mothership.infra.request_ids.forget_request")
def _forget_request(**kwargs) -> None:
    _request.set(None)
