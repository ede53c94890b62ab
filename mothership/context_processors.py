"""What every page's template may use beyond Django's own."""

from __future__ import annotations

from mothership.models import UserPreferences
from mothership.selectors import preferences_get


def theme(request) -> dict:
    """``theme``: the signed-in person's choice (system, light or dark) for ``<html data-theme>``;
    "system" for everyone else."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"theme": UserPreferences.Theme.SYSTEM.value}
    return {"theme": preferences_get(user=user).theme}
