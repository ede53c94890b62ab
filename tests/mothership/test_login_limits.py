"""Sign-in limits: a username locked out from an address after repeated failures, on the form and
the token endpoint alike, and a rate of sign-in attempts per address (the form, the admin's form
and the token endpoint, one count); 429 with Retry-After. The address is the peer's, or a trusted
proxy's X-Forwarded-For (tests/mothership/test_proxies.py has the real web process)."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from mothership.infra.login_limits import login_rate_reset
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def defaults(settings):
    """The limits at their production defaults (the suite raises them; see tests/support/embedded.py)."""
    settings.AXES_FAILURE_LIMIT = 5
    settings.MOTHERSHIP_LOGIN_RATE = "20/min"
    login_rate_reset(address="127.0.0.1")
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
    assert limited.json()["detail"].startswith("Too many sign-in attempts from this address")


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


def test_sprayed_passwords_over_many_usernames_are_limited_per_address_on_every_sign_in(client, defaults):
    """100 wrong passwords over 25 usernames (4 each: never one username's lockout) from one address."""
    users = [_user() for _ in range(25)]
    answers = [_form(client, users[i % 25].username, f"guess-{i}").status_code for i in range(100)]
    assert answers == [200] * 20 + [429] * 80  # MOTHERSHIP_LOGIN_RATE: 20/min per address

    refused = _form(client, users[0].username, "right-pw-123")
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert "Too many sign-in attempts from this address" in refused.content.decode()
    # One count for every sign-in: the token endpoint's and the admin's form.
    assert _token(users[0].username, "right-pw-123").status_code == 429
    admin = client.post("/admin/login/", {"username": users[0].username, "password": "right-pw-123"})
    assert admin.status_code == 429


def test_a_made_up_forwarded_for_does_not_escape_the_token_rate(defaults):
    defaults.MOTHERSHIP_LOGIN_RATE = "3/min"  # no proxy trusted (the default)
    user = _user()

    def attempt(forwarded_for):
        return APIClient().post(
            "/api/auth/token",
            {"username": user.username, "password": "wrong"},
            format="json",
            HTTP_X_FORWARDED_FOR=forwarded_for,
        )

    assert [attempt(f"198.51.100.{i}").status_code for i in range(1, 5)] == [400, 400, 400, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_rate_and_lockout(client, defaults):
    """The proxy-on-another-machine case: every request comes from its address, the client is the
    right-most address of X-Forwarded-For it does not trust (what the client wrote left of it is ignored)."""
    defaults.MOTHERSHIP_TRUSTED_PROXIES = ("127.0.0.1", "10.0.0.0/8")
    defaults.MOTHERSHIP_LOGIN_RATE = "3/min"
    for address in ("203.0.113.5", "203.0.113.6", "203.0.113.7"):
        login_rate_reset(address=address)
    user = _user()

    def token(password, forwarded_for):
        return APIClient().post(
            "/api/auth/token",
            {"username": user.username, "password": password},
            format="json",
            HTTP_X_FORWARDED_FOR=forwarded_for,
        )

    # The client rewrites its own part of the header at each attempt; the proxies' part names it.
    statuses = [token("wrong", f"1.1.1.{i}, 203.0.113.5, 10.0.0.2").status_code for i in range(4)]
    assert statuses == [400, 400, 400, 429]
    assert token("right-pw-123", "203.0.113.6, 10.0.0.2").status_code == 200  # another client, same proxy

    # The lockout too is per username and per client address, not per proxy.
    defaults.MOTHERSHIP_LOGIN_RATE = "100/min"

    def form(password, forwarded_for):
        return client.post(
            "/accounts/login/", {"username": user.username, "password": password}, HTTP_X_FORWARDED_FOR=forwarded_for
        )

    assert [form("wrong", "203.0.113.7, 10.0.0.2").status_code for _ in range(5)] == [200] * 4 + [429]
    assert form("right-pw-123", "203.0.113.7, 10.0.0.2").status_code == 429
    assert form("right-pw-123", "203.0.113.6, 10.0.0.2").status_code == 302
