"""Limits on guessing passwords: a rate of sign-in attempts per address (the token endpoint) and,
for the form and the token endpoint alike, a lockout of one username from one address after
``MOTHERSHIP_LOGIN_FAILURE_LIMIT`` failures in a row (django-axes, counted in the shared Redis
cache so every web process sees the same count)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from rest_framework.throttling import AnonRateThrottle


def locked_out(request, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out attempt: 429 with Retry-After and a sentence (JSON on the API)."""
    seconds = int(settings.MOTHERSHIP_LOGIN_LOCKOUT_SECONDS)
    message = f"Too many failed sign-ins for this username from this address; try again in {max(1, seconds // 60)} minutes."
    headers = {"Retry-After": str(seconds)}
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=429, headers=headers)
    return HttpResponse(message, status=429, headers=headers, content_type="text/plain; charset=utf-8")


class LoginRateThrottle(AnonRateThrottle):
    """Sign-in attempts per client address (``MOTHERSHIP_LOGIN_RATE``, read at each request)."""

    scope = "login"

    def get_rate(self):
        return settings.MOTHERSHIP_LOGIN_RATE
