"""Per-user rates on what costs work or money: messages sent, warming changes, warms asked for by
hand, chats created, tool calls, share links made, imports.

Each is an exact count in Redis (``mothership.infra.rates``: one Lua script per check, so every
process and every thread shares it and racing requests never pass it together), with its rate
read from settings at each call (``MOTHERSHIP_SEND_RATE`` …). The API, the pages, the socket and
the worker call the same check: past the rate it raises DRF's ``Throttled`` (with the wait),
which the API answers ``429`` with ``Retry-After`` and the socket with
``{"type": "error", "code": "rate_limited"}``.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import Throttled

from mothership.infra.rates import rate_hit, rate_reset

# scope → (the setting holding its rate, what the refusal calls it)
SCOPES = {
    "send": ("MOTHERSHIP_SEND_RATE", "Too many messages sent."),
    "warming": ("MOTHERSHIP_WARMING_CHANGE_RATE", "Too many warming changes."),
    "warm_now": ("MOTHERSHIP_WARM_NOW_RATE", "Too many warms asked for."),
    "chat_create": ("MOTHERSHIP_CHAT_CREATE_RATE", "Too many chats created."),
    "tool_call": ("MOTHERSHIP_TOOL_CALL_RATE", "Too many tool calls."),
    "share": ("MOTHERSHIP_SHARE_RATE", "Too many share links made."),
    "import": ("MOTHERSHIP_IMPORT_RATE", "Too many imports."),
    "upload": ("MOTHERSHIP_UPLOAD_RATE", "Too many files uploaded."),
}


def user_rate_check(*, scope: str, user) -> None:
    """Count one action of ``scope`` for ``user`` (a user, or anything with its ``pk``); raise
    ``Throttled`` (with the wait) past its rate, and then count nothing."""
    setting, refusal = SCOPES[scope]
    wait = rate_hit(scope=scope, who=str(user.pk), rate=getattr(settings, setting))
    if wait is not None:
        raise Throttled(wait=wait, detail=refusal)


def user_rate_reset(*, scope: str, user) -> None:
    """Forget a user's count (tests)."""
    rate_reset(scope=scope, who=str(user.pk))
