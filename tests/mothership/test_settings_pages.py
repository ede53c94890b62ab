"""``/settings/``: profile, password, API tokens, appearance and default model, each a form that
checks what it is given (400 with the errors beside their fields, never a 500) and calls one
service; and what the choices change elsewhere (the theme on every page, a new chat's model)."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chats.models import Chat
from mothership.infra.llm_models import parse_llm_models
from mothership.models import ApiToken, UserPreferences

pytestmark = pytest.mark.django_db

TWO_MODELS = [
    {"id": "mothership-local-1", "provider": "local", "label": "Local"},
    {"id": "local-terse", "provider": "local", "label": "Local (terse)"},
]
STRONG = "violet-harbour-lantern-42"


@pytest.fixture
def two_models(settings):
    settings.LLM_MODELS = parse_llm_models(json.dumps(TWO_MODELS), {}, max_tokens=100)


def _text(answer) -> str:
    return answer.content.decode().replace("&#x27;", "'").replace("&quot;", '"')


PAGES = [
    "/settings/",
    "/settings/password/",
    "/settings/tokens/",
    "/settings/appearance/",
    "/settings/model/",
    "/settings/workspaces/",
]


@pytest.mark.parametrize("path", PAGES)
def test_each_settings_page_needs_a_login_and_marks_its_tab(client, browser_client, path):
    assert client.get(path).status_code == 302 and client.get(path)["Location"].startswith("/accounts/login/")
    page = _text(browser_client.get(path))
    assert '<nav class="tabs" aria-label="Settings">' in page
    current = re.findall(r'<a href="([^"]+)" aria-current="page">', page)
    assert current == [path]


def test_the_profile_saves_names_and_a_valid_e_mail(browser_client, user):
    answer = browser_client.post("/settings/", {"first_name": " Alice ", "last_name": "Liddell", "email": "alice@example.com"})
    assert answer.status_code == 302 and answer["Location"] == "/settings/"
    user.refresh_from_db()
    assert (user.first_name, user.last_name, user.email) == ("Alice", "Liddell", "alice@example.com")
    assert "Profile saved." in _text(browser_client.get("/settings/"))


@pytest.mark.parametrize(
    "email, why",
    [("not-an-address", "Enter a valid email address."), ("TAKEN@example.com", "Another account uses that e-mail.")],
)
def test_a_bad_e_mail_is_a_400_with_the_reason_beside_the_field(browser_client, user, make_user, email, why):
    other = make_user("bob")
    other.email = "taken@example.com"
    other.save()
    answer = browser_client.post("/settings/", {"first_name": "A", "last_name": "B", "email": email})
    assert answer.status_code == 400
    assert re.search(r'<p class="field-error" id="id_email_error">' + re.escape(why), _text(answer))
    user.refresh_from_db()
    assert (user.first_name, user.email) == ("", "")


def test_a_name_too_long_is_a_400_not_a_500(browser_client, user):
    answer = browser_client.post("/settings/", {"first_name": "x" * 500, "last_name": "", "email": ""})
    assert answer.status_code == 400 and "at most 150 characters" in _text(answer)


def test_the_password_changes_and_this_browser_stays_signed_in_the_others_not(browser_client, user):
    elsewhere = Client()
    elsewhere.force_login(user)
    assert elsewhere.get("/").status_code == 200

    answer = browser_client.post(
        "/settings/password/", {"old_password": "pw-123456", "new_password1": STRONG, "new_password2": STRONG}
    )

    assert answer.status_code == 302 and answer["Location"] == "/settings/password/"
    user.refresh_from_db()
    assert user.check_password(STRONG)
    assert browser_client.get("/").status_code == 200  # update_session_auth_hash kept this session
    assert elsewhere.get("/").status_code == 302  # the other one is signed out


@pytest.mark.parametrize(
    "form, field, why",
    [
        ({"old_password": "wrong", "new_password1": STRONG, "new_password2": STRONG}, "old_password", "incorrect"),
        ({"old_password": "pw-123456", "new_password1": STRONG, "new_password2": STRONG + "x"}, "new_password2", "match"),
        ({"old_password": "pw-123456", "new_password1": "password", "new_password2": "password"}, "new_password2", "too common"),
    ],
)
def test_a_refused_password_is_a_400_saying_why(browser_client, user, form, field, why):
    answer = browser_client.post("/settings/password/", form)
    assert answer.status_code == 400
    assert re.search(rf'id="id_{field}_error">[^<]*{why}', _text(answer)), _text(answer)
    user.refresh_from_db()
    assert user.check_password("pw-123456")


def test_djangos_own_password_change_page_still_works(browser_client):
    assert browser_client.get("/accounts/password_change/").status_code == 200


def test_a_new_token_is_shown_once_and_listed_without_its_key(browser_client, user):
    created = browser_client.post("/settings/tokens/", {"name": "laptop CLI"})
    assert created.status_code == 200 and created["Cache-Control"].startswith("max-age=0")
    key = re.search(r'id="token-key" value="(msk_[^"]+)"', _text(created)).group(1)
    assert 'id="token-copy"' in _text(created)
    token = ApiToken.objects.get(user=user)
    assert token.name == "laptop CLI" and token.prefix == key[:12]
    assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/mothership/workspaces").status_code == 200

    listed = _text(browser_client.get("/settings/tokens/"))
    assert "laptop CLI" in listed and key[:12] in listed and key not in listed
    assert re.search(r"<dt>Last used</dt><dd><time datetime=", listed)  # the request above used it


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_token_without_a_fit_name_is_a_400(browser_client, user, name):
    answer = browser_client.post("/settings/tokens/", {"name": name})
    assert answer.status_code == 400 and 'id="id_name_error"' in _text(answer)
    assert not ApiToken.objects.exists()


def test_revoking_from_the_page_ends_the_token_and_anothers_token_is_untouched(browser_client, user, make_user):
    browser_client.post("/settings/tokens/", {"name": "mine"})
    mine = ApiToken.objects.get(user=user)
    other_user = make_user("bob")
    other_browser = Client()
    other_browser.force_login(other_user)
    other_browser.post("/settings/tokens/", {"name": "bobs"})
    theirs = ApiToken.objects.get(user=other_user)

    assert browser_client.post(f"/settings/tokens/{theirs.pk}/revoke").status_code == 302
    assert ApiToken.objects.filter(pk=theirs.pk).exists()
    assert "already revoked" in _text(browser_client.get("/settings/tokens/"))

    assert browser_client.post(f"/settings/tokens/{mine.pk}/revoke").status_code == 302
    assert not ApiToken.objects.filter(pk=mine.pk).exists()
    assert browser_client.get(f"/settings/tokens/{mine.pk}/revoke").status_code == 405  # a link cannot revoke


def test_the_sign_in_token_is_listed_and_revocable(browser_client, user):
    Token.objects.create(user=user)
    assert 'id="sign-in-token"' in _text(browser_client.get("/settings/tokens/"))
    assert browser_client.post("/settings/tokens/sign-in/revoke").status_code == 302
    assert not Token.objects.filter(user=user).exists()
    assert 'id="sign-in-token"' not in _text(browser_client.get("/settings/tokens/"))


def test_settings_writes_need_the_csrf_token(user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    for path, body in [
        ("/settings/", {"email": "a@example.com"}),
        ("/settings/password/", {}),
        ("/settings/tokens/", {"name": "x"}),
        ("/settings/appearance/", {"theme": "dark"}),
        ("/settings/model/", {"default_model": ""}),
    ]:
        assert browser.post(path, body).status_code == 403, path
    assert not ApiToken.objects.exists() and not UserPreferences.objects.exists()


def test_the_theme_is_saved_and_every_page_renders_it(browser_client, user, workspace, client):
    assert 'data-theme="system"' in _text(browser_client.get("/"))
    assert browser_client.post("/settings/appearance/", {"theme": "dark"}).status_code == 302
    assert UserPreferences.objects.get(user=user).theme == "dark"
    for path in ("/", "/settings/", f"/workspaces/{workspace.pk}/"):
        assert '<html lang="en" data-theme="dark">' in _text(browser_client.get(path)), path
    assert 'data-theme="system"' in _text(client.get("/accounts/login/"))  # signed out: the system's


@pytest.mark.parametrize("theme", ["", "blue", "DARK"])
def test_an_unknown_theme_is_a_400(browser_client, user, theme):
    answer = browser_client.post("/settings/appearance/", {"theme": theme})
    assert answer.status_code == 400 and 'class="field-error"' in _text(answer)
    assert not UserPreferences.objects.exists()


def test_new_chats_start_on_the_default_model_from_the_page_and_the_api(two_models, browser_client, user, workspace):
    assert browser_client.post("/settings/model/", {"default_model": "local-terse"}).status_code == 302
    assert 'value="local-terse" selected' in _text(browser_client.get("/settings/model/"))

    browser_client.post("/chats/new", {"workspace": str(workspace.pk), "title": "from the page"})
    api = APIClient()
    api.force_authenticate(user)
    by_api = api.post("/api/mothership/chats", {"workspace": str(workspace.pk), "title": "by the api"}, format="json")
    chosen = api.post(
        "/api/mothership/chats", {"workspace": str(workspace.pk), "title": "named", "model": "mothership-local-1"}, format="json"
    )

    assert by_api.status_code == 201 and by_api.json()["model"] == "local-terse"
    assert chosen.json()["model"] == "mothership-local-1"  # a model named in the request wins
    assert Chat.objects.get(title="from the page").model_id == "local-terse"


def test_a_default_model_taken_off_the_server_falls_back_to_the_deployments(
    two_models, settings, browser_client, user, workspace
):
    browser_client.post("/settings/model/", {"default_model": "local-terse"})
    settings.LLM_MODELS = parse_llm_models(json.dumps(TWO_MODELS[:1]), {}, max_tokens=100)
    api = APIClient()
    api.force_authenticate(user)
    answer = api.post("/api/mothership/chats", {"workspace": str(workspace.pk)}, format="json")
    assert answer.status_code == 201 and answer.json()["model"] == "mothership-local-1"
    assert Chat.objects.get(pk=answer.json()["id"]).model_id == ""
    assert 'value="" selected' in _text(browser_client.get("/settings/model/"))


def test_a_model_not_offered_is_a_400(two_models, browser_client, user):
    answer = browser_client.post("/settings/model/", {"default_model": "gpt-9"})
    assert answer.status_code == 400 and "Select a valid choice" in _text(answer)
    assert not UserPreferences.objects.exists()


def test_the_workspaces_tab_lists_the_users_workspaces_with_links(browser_client, workspace):
    page = _text(browser_client.get("/settings/workspaces/"))
    assert f'href="/workspaces/{workspace.pk}/">Acme</a>' in page


def test_a_users_preferences_go_with_the_user(user):
    UserPreferences.objects.create(user=user, theme="dark")
    get_user_model().objects.filter(pk=user.pk).delete()
    assert not UserPreferences.objects.exists()
