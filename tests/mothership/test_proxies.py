"""``MOTHERSHIP_TRUSTED_PROXIES``: X-Forwarded-For and X-Forwarded-Proto count only from the proxies it
names, for uvicorn (the real web process), the sign-in lockout and rate, and the logs alike."""

from __future__ import annotations

import secrets
import subprocess
import sys
import uuid

import httpx
import pytest

from mothership.infra.proxies import client_address_from, parse_trusted_proxies
from tests import factories
from tests.support import processes

# The sign-in limits at their defaults, the per-address rate out of the way (the lockout is under test).
LOCKOUT = {"MOTHERSHIP_LOGIN_FAILURE_LIMIT": "5", "MOTHERSHIP_LOGIN_RATE": "10000/min"}


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "client"),
    [
        ("127.0.0.1", "203.0.113.9", (), "127.0.0.1"),  # none trusted: the header is the client's own words
        ("198.51.100.1", "203.0.113.9", ("127.0.0.1",), "198.51.100.1"),  # not from the proxy
        ("127.0.0.1", "203.0.113.9", ("127.0.0.1",), "203.0.113.9"),
        ("127.0.0.1", "", ("127.0.0.1",), "127.0.0.1"),  # the proxy itself, with no header
        # The right-most untrusted hop: what the client wrote on the left counts for nothing.
        ("10.0.0.3", "1.2.3.4, 203.0.113.9, 10.0.0.2", ("10.0.0.0/8",), "203.0.113.9"),
        ("10.0.0.3", "203.0.113.9:4711", ("10.0.0.0/8",), "203.0.113.9"),  # a port is not part of the address
        ("::1", "[2001:db8::7]:443", ("::1",), "2001:db8::7"),
        ("10.0.0.3", "10.0.0.9, 10.0.0.2", ("10.0.0.0/8",), "10.0.0.9"),  # every hop trusted: the first
    ],
    ids=["none-trusted", "untrusted-peer", "trusted-peer", "no-header", "chain", "port", "ipv6", "all-trusted"],
)
def test_the_client_is_the_peer_unless_a_trusted_proxy_names_it(peer, forwarded_for, trusted, client):
    assert client_address_from(peer, forwarded_for, trusted) == client


def test_the_setting_takes_addresses_and_networks_and_names_a_wrong_entry():
    assert parse_trusted_proxies("") == ()
    assert parse_trusted_proxies(" 127.0.0.1, 10.0.0.0/8 ::1") == ("127.0.0.1", "10.0.0.0/8", "::1")
    with pytest.raises(ValueError, match=r"'10.0.0.0/33' is not an IP address or a CIDR network"):
        parse_trusted_proxies("127.0.0.1,10.0.0.0/33")
    with pytest.raises(ValueError, match=r"'10.0.0.1/8' .*its network is 10.0.0.0/8"):
        parse_trusted_proxies("10.0.0.1/8")
    with pytest.raises(ValueError, match=r"'proxy.local'"):
        parse_trusted_proxies("proxy.local")


def _check(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=processes.ROOT,
        env=processes.process_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_wrong_proxy_entry_or_https_without_a_trusted_proxy_stops_the_app_at_start():
    wrong = _check(MOTHERSHIP_TRUSTED_PROXIES="10.0.0.0/33")
    assert wrong.returncode != 0 and "MOTHERSHIP_TRUSTED_PROXIES: '10.0.0.0/33' is not an IP address" in wrong.stderr
    https = _check(MOTHERSHIP_HTTPS="1", MOTHERSHIP_TRUSTED_PROXIES="")
    assert https.returncode != 0 and "MOTHERSHIP_HTTPS=1 needs MOTHERSHIP_TRUSTED_PROXIES" in https.stderr


def _sign_in(browser: httpx.Client, username: str, password: str, forwarded_for: str) -> int:
    if "csrftoken" not in browser.cookies:
        browser.get("/accounts/login/")
    answer = browser.post(
        "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return answer.status_code


@pytest.mark.django_db(transaction=True)
def test_uvicorn_believes_x_forwarded_for_only_from_a_trusted_proxy(tmp_path):
    victim = factories.UserFactory(username=f"victim-{uuid.uuid4().hex[:8]}", password="right-pw-123")

    # No proxy trusted (the default): 40 wrong passwords, each "forwarded for" a new address, are
    # one address's attempts, and the lockout holds even against the right password.
    web, base = processes.start_server(tmp_path, name="untrusted", **LOCKOUT)
    try:
        with httpx.Client(base_url=base) as browser:
            answers = [_sign_in(browser, victim.username, "wrong", f"198.51.100.{i}") for i in range(1, 41)]
            assert answers == [200] * 4 + [429] * 36
            assert _sign_in(browser, victim.username, "right-pw-123", "198.51.100.99") == 429
        assert "198.51.100." not in web.output()  # uvicorn logs the peer, not what the client claims
    finally:
        web.stop()

    # A trusted proxy's header names the client: the lockout is per username and per address from it,
    # so a proxy that every client shares does not lock the username out for everyone.
    other = factories.UserFactory(username=f"other-{uuid.uuid4().hex[:8]}", password="right-pw-123")
    web, base = processes.start_server(tmp_path, name="trusted", MOTHERSHIP_TRUSTED_PROXIES="127.0.0.1", **LOCKOUT)
    try:
        with httpx.Client(base_url=base) as browser:
            assert [_sign_in(browser, other.username, "wrong", "203.0.113.5") for _ in range(5)] == [200] * 4 + [429]
        with httpx.Client(base_url=base) as browser:
            assert _sign_in(browser, other.username, "right-pw-123", "203.0.113.6") == 302
        assert '203.0.113.5:0 - "POST /accounts/login/ HTTP/1.1" 429' in web.output()
    finally:
        web.stop()


@pytest.mark.django_db(transaction=True)
def test_x_forwarded_proto_from_an_untrusted_peer_does_not_make_a_request_https(tmp_path):
    production = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "chat.example.com,127.0.0.1",
        "MOTHERSHIP_HTTPS": "1",
        "MOTHERSHIP_TRUSTED_PROXIES": "192.0.2.10",  # the proxy is elsewhere; 127.0.0.1 is a client
    }
    web, base = processes.start_server(tmp_path, name="proto", **production)
    try:
        spoofed = httpx.get(base + "/accounts/login/", headers={"X-Forwarded-Proto": "https"}, follow_redirects=False)
        assert spoofed.status_code == 301 and spoofed.headers["location"].startswith("https://")
    finally:
        web.stop()
