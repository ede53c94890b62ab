"""Limits on guessing passwords, on every sign-in (the form, the admin's form, the token endpoint):

- a rate of attempts per client address (``MOTHERSHIP_LOGIN_RATE``, an exact count in Redis,
  ``mothership.infra.rates``), so that spraying passwords over many usernames is limited too;
- a lockout of one username from one address after ``MOTHERSHIP_LOGIN_FAILURE_LIMIT`` failures
  in a row (django-axes, counted in the shared Redis cache so every web process sees the same count).

Both take the address from ``mothership.infra.proxies.client_address``: ``X-Forwarded-For``
counts only from ``MOTHERSHIP_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import redis
from django.conf import settings
from django.http import HttpResponse, JsonResponse

from mothership.infra.proxies import client_address
from mothership.infra.rates import rate_hit, rate_reset

# The views that check a password (Django's form, the admin's, ``POST /api/auth/token``).
SIGN_IN_VIEWS = frozenset({"login", "admin:login", "api-token"})
RATE_SCOPE = "login"


def _too_many(request, message: str, seconds: int) -> HttpResponse:
    headers = {"Retry-After": str(seconds)}
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=429, headers=headers)
    return HttpResponse(message, status=429, headers=headers, content_type="text/plain; charset=utf-8")


def _unavailable(request) -> HttpResponse:
    message = "Sign-in is unavailable for a moment (Redis cannot be reached); try again shortly."
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=503)
    return HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")


def locked_out(request, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out attempt: 429 with Retry-After and a sentence (JSON on the API)."""
    seconds = int(settings.MOTHERSHIP_LOGIN_LOCKOUT_SECONDS)
    message = f"Too many failed sign-ins for this username from this address; try again in {max(1, seconds // 60)} minutes."
    return _too_many(request, message, seconds)


def login_rate_reset(*, address: str) -> None:
    """Forget an address's sign-in attempts (tests; an operator)."""
    rate_reset(scope=RATE_SCOPE, who=address)


class SignInRateMiddleware:
    """Counts every sign-in attempt (a POST to a sign-in view) against its address's rate before the
    password is checked; past it, 429 with Retry-After, and the password is not tried."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method != "POST" or request.resolver_match.view_name not in SIGN_IN_VIEWS:
            return None
        try:
            wait = rate_hit(scope=RATE_SCOPE, who=client_address(request), rate=settings.MOTHERSHIP_LOGIN_RATE)
        except redis.RedisError:  # no count, no sign-in: the lockout's count is in the same Redis
            return _unavailable(request)
        if wait is None:
            return None
        return _too_many(request, f"Too many sign-in attempts from this address; try again in {wait} seconds.", wait)
