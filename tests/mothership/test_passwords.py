"""Weak passwords refused on every path that sets one (Django's AUTH_PASSWORD_VALIDATORS: similar to
the user, shorter than 10, common, all digits), with a sentence that says why: the password change
page, the admin's user forms, and ``createsuperuser``, its ``--noinput`` form too. Before,
``password`` and ``12345678`` were accepted everywhere, and ``--noinput`` took any password."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from tests import factories

pytestmark = pytest.mark.django_db

WEAK = {
    "password": "This password is too common.",
    "12345678": "This password is entirely numeric.",
    "short-1a": "This password is too short. It must contain at least 10 characters.",
}
STRONG = "violet-harbour-lantern-42"


def test_the_password_change_page_refuses_a_weak_password_and_says_why(browser_client, user):
    for weak, why in WEAK.items():
        form = {"old_password": "pw-123456", "new_password1": weak, "new_password2": weak}
        answer = browser_client.post("/accounts/password_change/", form)
        assert answer.status_code == 200 and why in answer.content.decode().replace("&#x27;", "'"), weak
        user.refresh_from_db()
        assert user.check_password("pw-123456"), weak

    form = {"old_password": "pw-123456", "new_password1": STRONG, "new_password2": STRONG}
    assert browser_client.post("/accounts/password_change/", form).status_code == 302
    user.refresh_from_db()
    assert user.check_password(STRONG)


def test_the_admin_refuses_a_weak_password_for_a_new_user():
    admin = Client()
    admin.force_login(factories.UserFactory(username="root", is_staff=True, is_superuser=True))
    form = {"username": "newcomer", "usable_password": "true", "password1": "password", "password2": "password"}
    answer = admin.post("/admin/auth/user/add/", form)
    assert answer.status_code == 200 and WEAK["password"] in answer.content.decode().replace("&#x27;", "'")
    assert not get_user_model().objects.filter(username="newcomer").exists()
    answer = admin.post("/admin/auth/user/add/", {**form, "password1": STRONG, "password2": STRONG})
    assert answer.status_code == 302 and get_user_model().objects.get(username="newcomer").check_password(STRONG)


def test_createsuperuser_noinput_refuses_a_weak_password_from_the_environment(monkeypatch):
    """Django's own command checks a password only at its prompt; ``--noinput`` took any."""
    command = ["createsuperuser", "--noinput", "--username", "root-admin", "--email", "root@example.com"]
    for weak in ("password", "12345678", "root-admin-1"):
        monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", weak)
        with pytest.raises(CommandError, match="DJANGO_SUPERUSER_PASSWORD was refused: "):
            call_command(*command)
        assert not get_user_model().objects.filter(username="root-admin").exists()

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", STRONG)
    call_command(*command)
    assert get_user_model().objects.get(username="root-admin", is_superuser=True).check_password(STRONG)
