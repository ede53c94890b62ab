"""Sign-in limits: a username locked out from an address after repeated failures, on the form and
the token endpoint alike, and a rate of token sign-ins per address; 429 with Retry-After."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def defaults(settings):
    """The limits at their production defaults (the suite raises them; see tests/support/embedded.py)."""
    settings.AXES_FAILURE_LIMIT = 5
    settings.MOTHERSHIP_LOGIN_RATE = "20/min"
    cache.delete("throttle_login_127.0.0.1")
    return settings


def _form(client, username, password):
    return client.post("/accounts/login/", {"username": username, "password": password})


def _token(username, password):
    return APIClient().post("/api/auth/token", {"username": username, "password": password}, format="json")


def _user():
    return factories.UserFactory(username=f"u-{uuid.uuid4().hex[:8]}", password="right-pw-123")


def test_five_failures_lock_that_username_from_that_address_on_the_form_and_the_token_endpoint(client, defaults):
    victim, bystander = _user(), _user()
    answers = [_form(client, victim.username, "wrong").status_code for _ in range(5)]
    assert answers == [200, 200, 200, 200, 429]  # the form shows its error four times, then the lockout

    locked = _form(client, victim.username, "right-pw-123")  # the right password no longer helps
    assert locked.status_code == 429 and int(locked["Retry-After"]) == defaults.MOTHERSHIP_LOGIN_LOCKOUT_SECONDS
    assert "Too many failed sign-ins" in locked.content.decode()
    token = _token(victim.username, "right-pw-123")
    assert token.status_code == 429 and "Too many failed sign-ins" in token.json()["detail"]

    assert _form(client, bystander.username, "right-pw-123").status_code == 302  # others sign in as before


def test_failures_on_the_token_endpoint_count_towards_the_same_lockout(client, defaults):
    victim = _user()
    assert [_token(victim.username, "wrong").status_code for _ in range(5)] == [400, 400, 400, 400, 429]
    assert _form(client, victim.username, "right-pw-123").status_code == 429


def test_a_success_before_the_limit_starts_the_count_again(client, defaults):
    user = _user()
    for _ in range(4):
        assert _token(user.username, "wrong").status_code == 400
    assert _token(user.username, "right-pw-123").status_code == 200
    assert [_token(user.username, "wrong").status_code for _ in range(4)] == [400] * 4


def test_token_sign_ins_are_limited_per_address(defaults):
    defaults.MOTHERSHIP_LOGIN_RATE = "3/min"
    user = _user()
    assert [_token(user.username, "right-pw-123").status_code for _ in range(3)] == [200] * 3
    limited = _token(user.username, "right-pw-123")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert "throttled" in limited.json()["detail"]


def test_a_user_revokes_their_api_token(settings):
    user = _user()
    key = _token(user.username, "right-pw-123").json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/mothership/workspaces").status_code == 200
    assert client.delete("/api/auth/token").status_code == 204
    assert client.get("/api/mothership/workspaces").status_code in (401, 403)  # that token no longer works
    assert APIClient().delete("/api/auth/token").status_code in (401, 403)
    assert _token(user.username, "right-pw-123").json()["token"] != key  # a new one on the next sign-in
