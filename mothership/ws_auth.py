"""WebSocket authentication: the session cookie (browsers) or ``?token=`` (API clients)."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings


@database_sync_to_async
def _user_for_token(key: str):
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token and token.user.is_active else None


class TokenAuthMiddleware(BaseMiddleware):
    """Sets ``scope['user']`` from a ``?token=`` query parameter when one is given."""

    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        key = (query.get("token") or [""])[0]
        if key:
            user = await _user_for_token(key)
            if user is not None:
                scope = dict(scope, user=user, auth_token=key)  # re-checked when access changes
        return await super().__call__(scope, receive, send)


class BrowserOriginValidator(OriginValidator):
    """Browsers always send Origin: it must be one of ours. Other clients send none and
    authenticate by token, which a cross-site page cannot forge."""

    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def origin_validator(application):
    # Host-only patterns match any port and scheme, as Django's ALLOWED_HOSTS does.
    patterns = list(settings.ALLOWED_HOSTS) + list(settings.CSRF_TRUSTED_ORIGINS)
    return BrowserOriginValidator(application, patterns)
