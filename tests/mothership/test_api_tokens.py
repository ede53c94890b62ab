"""Named API tokens (Settings → API tokens): stored as a SHA-256 only, accepted as
``Authorization: Token msk_…`` beside DRF's one-per-user token (whose ``POST`` / ``DELETE
/api/auth/token`` contract is unchanged), ``last_used_at`` written at most once a minute, and a
revoked one refused at once: on its next request, and on the sockets opened with it."""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from mothership import access, services, tokens, ws_auth
from mothership.infra.redis import get_redis
from mothership.models import ApiToken
from tests.mothership.test_access import _dropped, _raw_delete, _subscribed

pytestmark = pytest.mark.django_db

WORKSPACES = "/api/mothership/workspaces"


def _with_key(key: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Token {key}")


def test_a_new_token_is_stored_as_its_sha256_only(user):
    token, key = services.api_token_create(user=user, name="  laptop CLI ")

    row = ApiToken.objects.get(pk=token.pk)
    assert key.startswith("msk_") and len(key) >= 40
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert row.prefix == key[:12] and row.name == "laptop CLI" and row.last_used_at is None
    stored = json.dumps(list(ApiToken.objects.values()), default=str)
    assert key not in stored and key[12:] not in stored  # no column holds the key, or its secret part
    assert services.api_token_create(user=user, name="another")[1] != key


def test_a_named_token_authenticates_as_its_user_and_a_wrong_one_is_refused(user, workspace):
    _token, key = services.api_token_create(user=user, name="ci")
    answer = _with_key(key).get(WORKSPACES)
    assert answer.status_code == 200 and answer.json() == [{"id": str(workspace.pk), "name": "Acme"}]

    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), "msk_", "msk_" + "x" * 200):
        refused = _with_key(wrong).get(WORKSPACES)
        # Session authentication comes first, so DRF answers 403 (as for DRF's tokens), never 401.
        assert (refused.status_code, refused.json()) == (403, {"detail": "Invalid token."}), wrong


def test_an_inactive_users_named_token_is_refused(user):
    _token, key = services.api_token_create(user=user, name="ci")
    user.is_active = False
    user.save()
    assert _with_key(key).get(WORKSPACES).status_code == 403


def test_drf_tokens_contract_is_unchanged_beside_named_ones(user, make_user):
    """POST /api/auth/token gives the one DRF token (the same one twice); DELETE with it revokes
    it, and leaves the named tokens alone."""
    _named, named_key = services.api_token_create(user=user, name="ci")
    first = APIClient().post("/api/auth/token", {"username": "alice", "password": "pw-123456"}, format="json")
    again = APIClient().post("/api/auth/token", {"username": "alice", "password": "pw-123456"}, format="json")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"token": Token.objects.get(user=user).key}
    drf_key = first.json()["token"]
    assert _with_key(drf_key).get(WORKSPACES).status_code == 200

    assert _with_key(drf_key).delete("/api/auth/token").status_code == 204
    assert not Token.objects.filter(user=user).exists()
    assert _with_key(drf_key).get(WORKSPACES).status_code == 403
    assert _with_key(named_key).get(WORKSPACES).status_code == 200  # named ones are left alone


def test_revoking_a_named_token_refuses_its_next_request_and_only_its_owner_may(user, make_user):
    token, key = services.api_token_create(user=user, name="ci")
    _kept, kept_key = services.api_token_create(user=user, name="kept")
    other = make_user("mallory")

    assert services.api_token_delete(user=other, token_id=token.pk) is False  # not theirs: nothing happens
    assert _with_key(key).get(WORKSPACES).status_code == 200

    assert services.api_token_delete(user=user, token_id=token.pk) is True
    assert _with_key(key).get(WORKSPACES).status_code == 403
    assert _with_key(kept_key).get(WORKSPACES).status_code == 200
    assert services.api_token_delete(user=user, token_id=token.pk) is False


def test_last_used_is_written_at_most_once_a_minute(user):
    token, key = services.api_token_create(user=user, name="ci")
    client = _with_key(key)

    # Given: a first request records the time.
    assert client.get(WORKSPACES).status_code == 200
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None and timezone.now() - first < datetime.timedelta(seconds=5)

    # When: more requests within the minute. Then: no write at all.
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client.get(WORKSPACES).status_code == 200
    assert not [q["sql"] for q in queries.captured_queries if q["sql"].upper().startswith("UPDATE")]
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first

    # When: the last write is a minute old. Then: the next request writes again.
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - datetime.timedelta(seconds=61))
    assert client.get(WORKSPACES).status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


def test_the_last_used_write_is_fenced_by_its_condition(user):
    """Two processes that both read a stale time: only the first UPDATE writes."""
    token, _key = services.api_token_create(user=user, name="ci")
    now = timezone.now()
    stale_a, stale_b = ApiToken.objects.get(pk=token.pk), ApiToken.objects.get(pk=token.pk)
    assert services.api_token_used(token=stale_a, now=now) is True
    assert services.api_token_used(token=stale_b, now=now + datetime.timedelta(seconds=30)) is False
    assert ApiToken.objects.get(pk=token.pk).last_used_at == now
    assert services.api_token_used(token=stale_b, now=now + datetime.timedelta(seconds=61)) is True


def test_a_user_may_hold_at_most_the_limit_of_named_tokens(user, monkeypatch):
    monkeypatch.setattr(services, "MAX_API_TOKENS", 2)
    services.api_token_create(user=user, name="a")
    services.api_token_create(user=user, name="b")
    with pytest.raises(services.TooManyTokens, match="revoke one"):
        services.api_token_create(user=user, name="c")
    assert ApiToken.objects.filter(user=user).count() == 2


def test_a_socket_ticket_from_a_named_token_remembers_its_digest_not_the_key(user):
    token, key = services.api_token_create(user=user, name="ci")
    answer = _with_key(key).post("/api/auth/ws-ticket")
    assert answer.status_code == 200
    record = get_redis().get(f"mothership:ws-ticket:{answer.json()['ticket']}").decode()
    assert key not in record
    assert json.loads(record)["token"] == "sha256:" + token.key_hash


def test_the_socket_check_knows_both_kinds_of_token_in_one_query(user, chat):
    token, key = services.api_token_create(user=user, name="ci")
    credential = tokens.digest_credential(token.key_hash)
    drf = Token.objects.create(user=user).key
    with CaptureQueriesContext(connection) as queries:
        assert access.socket_still_signed_in(user_id=user.pk, session_key=None, token_key=credential)
    assert len(queries) == 1
    assert access.socket_still_signed_in(user_id=user.pk, session_key=None, token_key=drf)
    assert not access.socket_still_signed_in(user_id=user.pk, session_key=None, token_key="sha256:" + "0" * 64)
    assert not access.socket_still_signed_in(user_id=user.pk, session_key=None, token_key=key)  # the key itself is no credential
    services.api_token_delete(user=user, token_id=token.pk)
    assert not access.socket_still_signed_in(user_id=user.pk, session_key=None, token_key=credential)


def test_token_in_the_url_accepts_a_named_token_when_allowed(settings, user):
    settings.MOTHERSHIP_WS_TOKEN_IN_URL = True
    token, key = services.api_token_create(user=user, name="ci")
    found = ws_auth._user_for_token(key)
    assert found == (user, "sha256:" + token.key_hash)
    assert ws_auth._user_for_token(key + "x") is None
    services.api_token_delete(user=user, token_id=token.pk)
    assert ws_auth._user_for_token(key) is None


@pytest.mark.django_db(transaction=True)
async def test_a_revoked_named_token_closes_the_sockets_opened_with_it(user, chat):
    """As ``test_access.test_a_deleted_api_token_closes_the_sockets_opened_with_it``, for a named token."""
    token, _key = await database_sync_to_async(services.api_token_create)(user=user, name="ci")
    communicator = await _subscribed(user, chat, auth_token=tokens.digest_credential(token.key_hash))
    await database_sync_to_async(services.api_token_delete)(user=user, token_id=token.pk)
    await _dropped(communicator, chat)


@pytest.mark.django_db(transaction=True)
async def test_revoking_another_named_token_closes_nothing(user, chat):
    token, _key = await database_sync_to_async(services.api_token_create)(user=user, name="ci")
    other, _ = await database_sync_to_async(services.api_token_create)(user=user, name="other")
    communicator = await _subscribed(user, chat, auth_token=tokens.digest_credential(token.key_hash))
    await database_sync_to_async(services.api_token_delete)(user=user, token_id=other.pk)
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_named_tokens_row_deleted_behind_the_apps_back_closes_its_socket_on_the_timer(settings, user, chat):
    settings.MOTHERSHIP_SOCKET_RECHECK_SECONDS = 0.5
    token, _key = await database_sync_to_async(services.api_token_create)(user=user, name="ci")
    communicator = await _subscribed(user, chat, auth_token=tokens.digest_credential(token.key_hash))
    await database_sync_to_async(_raw_delete)(ApiToken, id=token.pk)
    await _dropped(communicator, chat)


def test_operators_list_and_revoke_named_tokens_in_the_admin_but_never_add_one(user, make_user):
    from django.test import Client

    token, key = services.api_token_create(user=user, name="ci")
    staff = make_user("root")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    admin = Client()
    admin.force_login(staff)
    listed = admin.get("/admin/mothership/apitoken/")
    assert listed.status_code == 200 and "ci" in listed.content.decode() and key not in listed.content.decode()
    assert admin.get("/admin/mothership/apitoken/add/").status_code == 403
    assert admin.post(f"/admin/mothership/apitoken/{token.pk}/delete/", {"post": "yes"}).status_code == 302
    assert _with_key(key).get(WORKSPACES).status_code == 403


def test_delete_auth_token_called_with_a_named_token_revokes_that_token_only(user):
    drf_key = Token.objects.create(user=user).key
    _kept, other_key = services.api_token_create(user=user, name="kept")
    _token, key = services.api_token_create(user=user, name="leaving")

    assert _with_key(key).delete("/api/auth/token").status_code == 204

    assert _with_key(key).get(WORKSPACES).status_code == 403  # the one it was called with is gone
    assert _with_key(other_key).get(WORKSPACES).status_code == 200
    assert _with_key(drf_key).get(WORKSPACES).status_code == 200
    assert list(ApiToken.objects.filter(user=user).values_list("name", flat=True)) == ["kept"]
