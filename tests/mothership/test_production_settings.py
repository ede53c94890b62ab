"""Safe by default in production: debug off unless set, HTTPS settings behind one switch that make
``check --deploy`` pass, no public admin, no password reset without mail."""

from __future__ import annotations

import importlib
import os
import secrets
import subprocess
import sys

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import clear_url_caches

from tests.support import processes

PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "chat.example.com,127.0.0.1",
    "MOTHERSHIP_HTTPS": "1",
    "MOTHERSHIP_TRUSTED_PROXIES": "127.0.0.1",  # the TLS proxy (the tests' requests come from here)
}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MOTHERSHIP_HTTPS"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], env={**base, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_production_environment_passes_check_deploy_at_warning_level():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_the_https_switch_check_deploy_names_what_is_missing():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **{**PRODUCTION, "MOTHERSHIP_HTTPS": "0"})
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


def test_debug_is_off_unless_set_so_a_secret_is_required():
    result = _manage("check")  # no DJANGO_DEBUG, no secret
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off" in result.stderr
    shown = _manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG)", DJANGO_SECRET_KEY="x" * 50)
    assert shown.stdout.strip().splitlines()[-1] == "False", shown.stderr


def test_every_host_is_refused_with_debug_off():
    result = _manage("check", **{**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "*"})
    assert result.returncode != 0 and "DJANGO_ALLOWED_HOSTS=* is refused" in result.stderr


def test_demo_data_is_refused_with_debug_off():
    result = _manage("seed_demo", **PRODUCTION)
    assert result.returncode != 0 and "only with DJANGO_DEBUG=1" in result.stderr


@pytest.mark.django_db
def test_the_demo_user_is_an_ordinary_member_even_when_an_older_seed_made_it_an_admin(settings):
    settings.DEBUG = True
    call_command("seed_demo")
    demo = get_user_model().objects.get(username=settings.MOTHERSHIP_DEMO_USERNAME)
    assert not demo.is_staff and not demo.is_superuser
    demo.is_staff = demo.is_superuser = True
    demo.save()
    call_command("seed_demo")
    demo.refresh_from_db()
    assert not demo.is_staff and not demo.is_superuser
    settings.DEBUG = False
    with pytest.raises(CommandError):
        call_command("seed_demo")


@pytest.fixture
def urls_with(settings):
    """Reload the URLconf under the given settings."""
    import mothership.urls

    def reload(**values):
        for name, value in values.items():
            setattr(settings, name, value)
        importlib.reload(mothership.urls)
        clear_url_caches()

    yield reload
    settings.MOTHERSHIP_PASSWORD_RESET = False
    importlib.reload(mothership.urls)
    clear_url_caches()


@pytest.mark.django_db
def test_password_reset_is_offered_only_when_mail_is_configured(client, urls_with):
    urls_with(MOTHERSHIP_PASSWORD_RESET=False)
    assert client.get("/accounts/password_reset/").status_code == 404
    assert client.get("/accounts/login/").status_code == 200
    urls_with(MOTHERSHIP_PASSWORD_RESET=True)
    assert client.get("/accounts/password_reset/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_behind_a_tls_proxy_the_app_redirects_to_https_sends_hsts_and_secure_cookies(tmp_path):
    web, base = processes.start_server(tmp_path, name="https", **PRODUCTION)  # /healthz answers over plain HTTP
    try:
        plain = httpx.get(base + "/", follow_redirects=False)
        assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
        proxied = {"X-Forwarded-Proto": "https"}
        login = httpx.get(base + "/accounts/login/", headers=proxied)
        assert login.status_code == 200
        assert login.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
        assert "secure" in login.headers["set-cookie"].lower()  # the CSRF cookie
    finally:
        web.stop()
