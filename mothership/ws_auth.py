"""WebSocket authentication: the session cookie (browsers) or a socket ticket (API clients).

An API client asks ``POST /api/auth/ws-ticket`` for a ticket (valid ``WS_TICKET_SECONDS``, used
once) and connects to ``/ws/?ticket=…``, so that no lasting credential appears in a URL (proxies
log URLs). The ticket remembers how its request was authenticated (the API token or the
session), and the socket answers to that credential as if it had been used directly: revoke the
token or end the session and the socket is closed (``mothership.access``). ``?token=`` with the
API token itself works only with ``MOTHERSHIP_WS_TOKEN_IN_URL=1``.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from mothership import selectors, tokens
from mothership.access import socket_still_signed_in
from mothership.infra.redis import get_redis
from mothership.models import ApiToken

WS_TICKET_SECONDS = 60
_TICKET_KEY = "mothership:ws-ticket:{}"


def ws_ticket_issue(*, user, session_key: str | None, token_key: str | None) -> str:
    """A new single-use ticket for ``user``, authenticated by that session or token."""
    ticket = secrets.token_urlsafe(32)
    record = json.dumps({"user": user.pk, "session": session_key, "token": token_key})
    get_redis().set(_TICKET_KEY.format(ticket), record, ex=WS_TICKET_SECONDS)
    return ticket


def _ticket_redeem(ticket: str) -> tuple | None:
    """(user, session key, token key) for a live ticket, which is used up; None otherwise."""
    if not ticket or len(ticket) > 100:
        return None
    raw = get_redis().getdel(_TICKET_KEY.format(ticket))
    if raw is None:
        return None
    record = json.loads(raw)
    if not socket_still_signed_in(user_id=record["user"], session_key=record["session"], token_key=record["token"]):
        return None  # the token was revoked or the session ended within the ticket's minute
    return get_user_model().objects.get(pk=record["user"]), record["session"], record["token"]


def _user_for_token(key: str) -> tuple | None:
    """(user, the credential the socket remembers) for an API token's key: a named token (its
    digest, never the key) or DRF's (its key); None when it is no live token of an active user."""
    from rest_framework.authtoken.models import Token

    named = selectors.api_token_for_key(key=key) if tokens.is_named_key(key) else None
    if named is not None:
        return (named.user, tokens.digest_credential(named.key_hash)) if named.user.is_active else None
    token = Token.objects.select_related("user").filter(key=key).first()
    return (token.user, key) if token and token.user.is_active else None


def token_credential(auth) -> str | None:
    """What a socket ticket remembers of the API token a request was authenticated by (``request.auth``)."""
    if isinstance(auth, ApiToken):
        return tokens.digest_credential(auth.key_hash)
    return getattr(auth, "key", None)


@database_sync_to_async
def _authenticate(query: dict) -> dict:
    """What the query string authenticates: scope entries to set (none when it authenticates nothing)."""
    ticket = (query.get("ticket") or [""])[0]
    if ticket:
        redeemed = _ticket_redeem(ticket)
        if redeemed is None:
            return {"auth_refused": True}  # an unknown, used or expired ticket never falls back to the cookie
        user, session_key, token_key = redeemed
        return {"user": user, "auth_session": session_key, "auth_token": token_key}
    key = (query.get("token") or [""])[0]
    if key and settings.MOTHERSHIP_WS_TOKEN_IN_URL:
        found = _user_for_token(key)
        if found is not None:
            user, credential = found
            return {"user": user, "auth_token": credential}
    return {}


class TokenAuthMiddleware(BaseMiddleware):
    """Sets ``scope['user']`` from ``?ticket=`` (or ``?token=``, when allowed) when one is given;
    the session's user (``AuthMiddlewareStack``) otherwise."""

    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        if query.get("ticket") or query.get("token"):
            found = await _authenticate(query)
            if found.pop("auth_refused", False):
                found = {"user": AnonymousUser()}
            scope = dict(scope, **found)  # auth_session / auth_token: re-checked when access changes
        return await super().__call__(scope, receive, send)


class BrowserOriginValidator:
    """Browsers always send Origin: it must be one of ours, by scheme, host and port. Other clients
    send none and authenticate by token, which a cross-site page cannot forge."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("BrowserOriginValidator guards WebSocket connections only.")
        headers = dict(scope.get("headers", []))
        origin, host = headers.get(b"origin"), headers.get(b"host")
        if origin is None or origin_allowed(
            origin.decode("latin1"), host=host.decode("latin1") if host else None, scheme=scope.get("scheme", "ws")
        ):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _scheme_host_port(url: str) -> tuple[str, str, int] | None:
    """An origin (``scheme://host[:port]``) as (scheme, host, port), the port filled in; None when malformed."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # as ALLOWED_HOSTS writes IPv6
    return parts.scheme, host, port if port is not None else _DEFAULT_PORTS[parts.scheme]


def origin_allowed(origin: str, *, host: str | None, scheme: str) -> bool:
    """Whether a page at ``origin`` may open this socket: the same scheme, host and port as one of
    ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` for its subdomains), or a host of
    ``ALLOWED_HOSTS`` on this request's own scheme (https with ``MOTHERSHIP_HTTPS``) and the Host
    header's port. ``null`` and anything malformed are refused."""
    parsed = _scheme_host_port(origin)
    if parsed is None:
        return False
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        wanted = _scheme_host_port(trusted)
        if wanted is not None and parsed[0] == wanted[0] and parsed[2] == wanted[2]:
            pattern = wanted[1][1:] if wanted[1].startswith("*.") else wanted[1]  # "*.example.com": its subdomains
            if is_same_domain(parsed[1], pattern):
                return True
    domain, port = split_domain_port(host or "")
    if not domain:
        return False  # no Host header, or one Django would refuse
    own_scheme = "https" if settings.MOTHERSHIP_HTTPS or scheme in ("wss", "https") else "http"
    own_port = int(port) if port else _DEFAULT_PORTS[own_scheme]
    return parsed[0] == own_scheme and parsed[2] == own_port and validate_host(parsed[1], settings.ALLOWED_HOSTS)


def origin_validator(application):
    return BrowserOriginValidator(application)


class _SocketSessionMiddleware(SessionMiddleware):
    """Channels' session middleware without its wrapped ``send``. The wrapper saves a session only
    on ``http.response.start``, which a socket never sends, yet it looked at the session for every
    frame the socket sent (a twentieth of a web process's fan-out CPU). A socket's session is
    only read here."""

    async def __call__(self, scope, receive, send):
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send)


def socket_auth_stack(inner):
    """Channels' ``AuthMiddlewareStack`` for sockets: the session cookie's user in ``scope["user"]``."""
    return CookieMiddleware(_SocketSessionMiddleware(AuthMiddleware(inner)))
