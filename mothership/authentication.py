"""``Authorization: Token …`` for both kinds of API token: a named one (``msk_…``, stored hashed,
many per user, made on the settings page) and DRF's one-per-user token (``POST /api/auth/token``)."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from mothership import selectors, services, tokens


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's, which also knows named tokens: ``request.auth`` is then the ``ApiToken``. A revoked
    token is refused on its next request (its row is gone); ``last_used_at`` is written at most
    once a minute."""

    def authenticate_credentials(self, key):
        if not tokens.is_named_key(key):
            return super().authenticate_credentials(key)
        token = selectors.api_token_for_key(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        services.api_token_used(token=token)
        return token.user, token
