"""Socket tickets: API clients connect with ``/ws/?ticket=…`` (60 s, single use) instead of their
API token in the URL, which every proxy logs; ``?token=`` is refused unless
``MOTHERSHIP_WS_TOKEN_IN_URL=1``. On the real server, with that setting at its default."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from mothership.infra.redis import get_redis
from tests.support import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    proc, base = processes.start_server(tmp_path_factory.mktemp("tickets"), MOTHERSHIP_WS_TOKEN_IN_URL="0")
    yield proc, base
    proc.stop()


def _ticket(base: str, **headers) -> httpx.Response:
    return httpx.post(base + "/api/auth/ws-ticket", headers=headers, timeout=10)


async def _connect(base: str, query: str, **kwargs):
    return await websockets.connect(base.replace("http", "ws", 1) + "/ws/?" + query, close_timeout=0.5, **kwargs)


async def _refused(base: str, query: str) -> bool:
    """The server refuses the handshake (a consumer that closes before accepting: HTTP 403)."""
    try:
        ws = await _connect(base, query)
    except websockets.InvalidStatus as exc:
        return exc.response.status_code == 403
    try:
        await asyncio.wait_for(ws.recv(), 2)
    except websockets.ConnectionClosed:
        return ws.close_code == 4401
    return False


async def _subscribed(ws, chat) -> dict:
    await ws.send(json.dumps({"type": "subscribe", "conversationId": str(chat.id)}))
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def test_the_api_token_in_the_url_is_refused_by_default_and_a_ticket_works_once(server, token, chat):
    proc, base = server
    assert await _refused(base, f"token={token}")
    logged_before = len(proc.output())

    answer = await asyncio.to_thread(_ticket, base, Authorization=f"Token {token}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["expires_in"] == 60 and len(body["ticket"]) >= 32 and token not in body["ticket"]
    assert 55 <= get_redis().ttl(f"mothership:ws-ticket:{body['ticket']}") <= 60

    ws = await _connect(base, f"ticket={body['ticket']}")
    assert (await _subscribed(ws, chat))["type"] == "subscribed"
    await ws.close()

    assert await _refused(base, f"ticket={body['ticket']}")  # used once
    assert await _refused(base, "ticket=not-a-ticket")
    assert token not in proc.output()[logged_before:]  # the access log saw no API token this time


async def test_an_expired_ticket_is_refused(server, token):
    _proc, base = server
    ticket = (await asyncio.to_thread(_ticket, base, Authorization=f"Token {token}")).json()["ticket"]
    get_redis().pexpire(f"mothership:ws-ticket:{ticket}", 1)
    await asyncio.sleep(0.05)
    assert await _refused(base, f"ticket={ticket}")


async def test_a_ticket_never_outlives_its_token(server, token, chat):
    """Revoked after the ticket was issued: the ticket is refused. Revoked after the socket
    opened: the socket is closed (4403), as one opened with the token itself would be."""
    _proc, base = server
    headers = {"Authorization": f"Token {token}"}
    before, during = [(await asyncio.to_thread(_ticket, base, **headers)).json()["ticket"] for _ in range(2)]
    ws = await _connect(base, f"ticket={during}")
    assert (await _subscribed(ws, chat))["type"] == "subscribed"

    revoked = await asyncio.to_thread(httpx.delete, base + "/api/auth/token", headers=headers, timeout=10)
    assert revoked.status_code == 204
    frame = json.loads(await asyncio.wait_for(ws.recv(), 2))
    assert (frame["type"], frame["code"]) == ("error", "forbidden")
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 2)
    assert ws.close_code == 4403
    assert await _refused(base, f"ticket={before}")
    assert not await database_sync_to_async(Token.objects.filter(key=token).exists)()


async def test_a_session_asks_for_a_ticket_with_its_csrf_token_and_a_logout_ends_the_socket(server, user, chat):
    _proc, base = server

    def sign_in() -> httpx.Client:
        browser = httpx.Client(base_url=base, timeout=10)
        browser.get("/accounts/login/")
        csrf = browser.cookies["csrftoken"]
        answer = browser.post(
            "/accounts/login/",
            data={"username": user.username, "password": "pw-123456", "csrfmiddlewaretoken": csrf},
            headers={"Referer": base + "/accounts/login/"},
        )
        assert answer.status_code == 302
        return browser

    browser = await asyncio.to_thread(sign_in)
    assert (await asyncio.to_thread(browser.post, "/api/auth/ws-ticket")).status_code == 403  # no CSRF token
    csrf = {"X-CSRFToken": browser.cookies["csrftoken"], "Referer": base + "/"}
    answer = await asyncio.to_thread(browser.post, "/api/auth/ws-ticket", headers=csrf)
    assert answer.status_code == 200, answer.text

    ws = await _connect(base, f"ticket={answer.json()['ticket']}")  # no cookie: the ticket alone
    assert (await _subscribed(ws, chat))["type"] == "subscribed"
    await asyncio.to_thread(browser.post, "/accounts/logout/", headers=csrf)
    frame = json.loads(await asyncio.wait_for(ws.recv(), 2))
    assert frame["code"] == "forbidden"
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 2)
    assert ws.close_code == 4403


def test_anonymous_callers_get_no_ticket(server):
    _proc, base = server
    answer = _ticket(base)
    assert answer.status_code in (401, 403) and answer.json()["detail"]


async def test_a_named_tokens_ticket_works_and_revoking_it_in_settings_closes_the_socket(server, user, chat):
    """A named token (Settings → API tokens) gets a ticket like DRF's; revoked on the settings
    page, its socket is closed (4403) and its later tickets refused; the key never reaches Redis."""
    from django.test import Client

    from mothership.services import api_token_create

    _proc, base = server
    token, key = await database_sync_to_async(api_token_create)(user=user, name="e2e")
    headers = {"Authorization": f"Token {key}"}
    before, during = [(await asyncio.to_thread(_ticket, base, **headers)).json()["ticket"] for _ in range(2)]
    assert key not in (get_redis().get(f"mothership:ws-ticket:{during}") or b"").decode()
    ws = await _connect(base, f"ticket={during}")
    assert (await _subscribed(ws, chat))["type"] == "subscribed"

    def revoke_in_settings():
        browser = Client()
        browser.force_login(user)
        return browser.post(f"/settings/tokens/{token.pk}/revoke").status_code

    assert await database_sync_to_async(revoke_in_settings)() == 302
    frame = json.loads(await asyncio.wait_for(ws.recv(), 2))
    assert (frame["type"], frame["code"]) == ("error", "forbidden")
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 2)
    assert ws.close_code == 4403
    assert await _refused(base, f"ticket={before}")
    assert (await asyncio.to_thread(_ticket, base, **headers)).status_code == 403
