"""``/settings/``: a person's own settings, one tab a page (profile, password, API tokens,
appearance, default model, workspaces). Each page shows its form; a POST checks it (400 and the
errors beside their fields when it is wrong) and calls one service."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from chats import selectors as chat_selectors
from mothership import selectors, services
from mothership.forms import AppearanceForm, DefaultModelForm, PasswordForm, ProfileForm, TokenCreateForm

TABS = [
    ("settings", "Profile"),
    ("settings-password", "Password"),
    ("settings-tokens", "API tokens"),
    ("settings-appearance", "Appearance"),
    ("settings-model", "Default model"),
    ("settings-workspaces", "Workspaces"),
]


def _render(request, template: str, tab: str, context: dict, *, status: int = 200):
    return render(request, template, {"tabs": TABS, "tab": tab, **context}, status=status)


def _invalid(form) -> int:
    return 400 if form.is_bound and form.errors else 200


@login_required
@require_http_methods(["GET", "POST"])
def profile(request):
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Profile saved.")
        return redirect("settings")
    return _render(request, "mothership/settings/profile.html", "settings", {"form": form}, status=_invalid(form))


@login_required
@require_http_methods(["GET", "POST"])
def password(request):
    form = PasswordForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        update_session_auth_hash(request, user)  # this browser stays signed in; every other session ends
        messages.success(request, "Password changed. Your other sessions are signed out.")
        return redirect("settings-password")
    return _render(request, "mothership/settings/password.html", "settings-password", {"form": form}, status=_invalid(form))


def _tokens_page(request, *, form=None, new_key: str | None = None, new_token=None, error: str = "", status: int = 200):
    context = {
        "form": form or TokenCreateForm(),
        "tokens": selectors.api_tokens_list(user=request.user),
        "sign_in_token": selectors.sign_in_token(user=request.user),
        "new_key": new_key,
        "new_token": new_token,
        "error": error,
    }
    return _render(request, "mothership/settings/tokens.html", "settings-tokens", context, status=status)


@never_cache  # the page that shows a new key once must not be kept by any cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    if request.method == "GET":
        return _tokens_page(request)
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        return _tokens_page(request, form=form, status=400)
    try:
        token, key = services.api_token_create(user=request.user, name=form.cleaned_data["name"])
    except services.TooManyTokens as exc:
        return _tokens_page(request, form=form, error=str(exc), status=409)
    # Shown in this answer only (no redirect: the key is stored nowhere, not even in the session).
    return _tokens_page(request, new_key=key, new_token=token)


@login_required
@require_POST
def token_revoke(request, token_id: int):
    if services.api_token_delete(user=request.user, token_id=token_id):
        messages.success(request, "Token revoked: it no longer works, and what was connected with it is disconnected.")
    else:
        messages.info(request, "That token was already revoked.")
    return redirect("settings-tokens")


@login_required
@require_POST
def sign_in_token_revoke(request):
    if services.api_token_revoke(user=request.user):
        messages.success(request, "Sign-in token revoked. POST /api/auth/token makes a new one.")
    return redirect("settings-tokens")


@login_required
@require_http_methods(["GET", "POST"])
def appearance(request):
    preferences = selectors.preferences_get(user=request.user)
    form = AppearanceForm(request.POST or None, initial={"theme": preferences.theme})
    if request.method == "POST" and form.is_valid():
        services.preferences_update(user=request.user, theme=form.cleaned_data["theme"])
        messages.success(request, "Theme saved.")
        return redirect("settings-appearance")
    return _render(request, "mothership/settings/appearance.html", "settings-appearance", {"form": form}, status=_invalid(form))


@login_required
@require_http_methods(["GET", "POST"])
def default_model(request):
    chosen = selectors.user_default_model(user=request.user)  # a model taken off the server shows as the default
    form = DefaultModelForm(request.POST or None, initial={"default_model": chosen})
    if request.method == "POST" and form.is_valid():
        services.preferences_update(user=request.user, default_model=form.cleaned_data["default_model"])
        messages.success(request, "Default model saved: your new chats start on it.")
        return redirect("settings-model")
    return _render(request, "mothership/settings/model.html", "settings-model", {"form": form}, status=_invalid(form))


@login_required
def workspaces(request):
    memberships = chat_selectors.user_memberships(user=request.user)
    return _render(request, "mothership/settings/workspaces.html", "settings-workspaces", {"memberships": memberships})
