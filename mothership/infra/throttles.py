"""Per-user rates on what costs work or money: messages sent, warming changes, warms asked for by hand.

DRF's user throttle, counted in the shared Redis cache so that every web process sees one count,
with its rate read from settings at each call (``MOTHERSHIP_SEND_RATE`` …). The API and the
socket call the same check: past the rate it raises DRF's ``Throttled``, which the API answers
``429`` with ``Retry-After`` and the socket with ``{"type": "error", "code": "rate_limited"}``.
"""

from __future__ import annotations

from types import SimpleNamespace

from django.conf import settings
from rest_framework.exceptions import Throttled
from rest_framework.throttling import UserRateThrottle

# scope → (the setting holding its rate, what the refusal calls it)
SCOPES = {
    "send": ("MOTHERSHIP_SEND_RATE", "Too many messages sent."),
    "warming": ("MOTHERSHIP_WARMING_CHANGE_RATE", "Too many warming changes."),
    "warm_now": ("MOTHERSHIP_WARM_NOW_RATE", "Too many warms asked for."),
    "tool_call": ("MOTHERSHIP_TOOL_CALL_RATE", "Too many tool calls."),
}


class _UserRate(UserRateThrottle):
    def __init__(self, scope: str):
        self.scope = scope
        super().__init__()

    def get_rate(self):
        return getattr(settings, SCOPES[self.scope][0])


def user_rate_check(*, scope: str, user) -> None:
    """Count one action of ``scope`` for ``user`` (a user, or anything with its ``pk`` and
    ``is_authenticated``); raise ``Throttled`` (with the wait) past its rate."""
    throttle = _UserRate(scope)
    if not throttle.allow_request(SimpleNamespace(user=user), None):
        raise Throttled(wait=throttle.wait(), detail=SCOPES[scope][1])


def user_rate_reset(*, scope: str, user) -> None:
    """Forget a user's count (tests)."""
    throttle = _UserRate(scope)
    throttle.cache.delete(throttle.get_cache_key(SimpleNamespace(user=user), None))
