"""Access withdrawn at once, in process: each change that may shrink a user's access reaches their
open sockets through its receiver (``mothership/receivers.py``), and a change that shrinks nothing
closes nothing; a change that sends no signal is caught by each socket's check on a timer
(``MOTHERSHIP_SOCKET_RECHECK_SECONDS``), one query a period. The same over a real server and
worker: ``tests/e2e/test_access_withdrawn.py``."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from importlib import import_module

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from chats.models import Membership
from mothership import access
from mothership.consumers import MothershipConsumer
from mothership.infra import groups
from streams import events

pytestmark = pytest.mark.django_db(transaction=True)


async def _subscribed(user, chat, **scope) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope.update(user=user, **scope)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
    return communicator


async def _dropped(communicator, chat) -> None:
    frame = await communicator.receive_json_from(timeout=5)
    assert (frame["type"], frame["code"], frame["conversationId"]) == ("error", "forbidden", str(chat.id))
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}


def _signed_in_session(user) -> tuple[Client, dict]:
    """A browser signed in as ``user``, and the socket scope its session cookie would give."""
    browser = Client()
    browser.force_login(user)
    key = browser.session.session_key
    return browser, {"session": import_module(settings.SESSION_ENGINE).SessionStore(key)}


def _membership_deleted(user, chat, browser):
    Membership.objects.filter(user=user, workspace_id=chat.workspace_id).delete()


def _deactivated(user, chat, browser):
    user.is_active = False
    user.save()


def _new_password(user, chat, browser):
    user.set_password("a-new-pw-987654")
    user.save()


def _logged_out(user, chat, browser):
    browser.post("/accounts/logout/")


@pytest.mark.parametrize("change", [_membership_deleted, _deactivated, _new_password, _logged_out])
async def test_each_change_that_shrinks_access_drops_the_subscription_and_closes_the_socket(user, chat, change):
    # Given: a socket opened with the user's browser session, subscribed to a chat.
    browser, scope = await database_sync_to_async(_signed_in_session)(user)
    communicator = await _subscribed(user, chat, **scope)

    # When: their access changes.
    await database_sync_to_async(change)(user, chat, browser)

    # Then: the socket is told and closed.
    await _dropped(communicator, chat)


async def test_a_deleted_api_token_closes_the_sockets_opened_with_it(user, chat):
    token = await database_sync_to_async(Token.objects.create)(user=user)
    communicator = await _subscribed(user, chat, auth_token=token.key)
    await database_sync_to_async(token.delete)()
    await _dropped(communicator, chat)


async def test_a_sign_in_elsewhere_or_another_members_removal_closes_nothing(user, chat, make_user):
    # Given: a subscribed socket, and another member of the same workspace.
    browser, scope = await database_sync_to_async(_signed_in_session)(user)
    communicator = await _subscribed(user, chat, **scope)
    other = await database_sync_to_async(make_user)()
    await database_sync_to_async(Membership.objects.create)(user=other, workspace_id=chat.workspace_id)

    # When: the user signs in again in another browser (last_login saved), and the other member is removed.
    await database_sync_to_async(lambda: Client().force_login(user))()
    await database_sync_to_async(Membership.objects.filter(user=other).delete)()

    # Then: the socket keeps its subscription and answers.
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
    await communicator.disconnect()


# --- Changes no signal announces: caught by the socket's own timer --------------------------


def _raw_delete(model, **where) -> None:
    """A DELETE that sends no signal (another program, a DBA at the prompt, a migration)."""
    table = connection.ops.quote_name(model._meta.db_table)
    conditions = " AND ".join(f"{connection.ops.quote_name(column)} = %s" for column in where)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {conditions}", list(where.values()))


def _deactivated_by_update(user, chat, credential):
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)


def _password_changed_by_update(user, chat, credential):
    get_user_model().objects.filter(pk=user.pk).update(password=make_password("an-update-pw-13579"))


def _session_row_deleted(user, chat, credential):
    Session.objects.filter(session_key=credential).delete()


def _token_row_deleted(user, chat, credential):
    _raw_delete(Token, key=credential)


def _membership_row_deleted(user, chat, credential):
    _raw_delete(Membership, user_id=user.pk, workspace_id=chat.workspace_id.hex)


def _session(user) -> tuple[str, dict]:
    _browser, scope = _signed_in_session(user)
    return scope["session"].session_key, scope


def _token(user) -> tuple[str, dict]:
    key = Token.objects.create(user=user).key
    return key, {"auth_token": key}


UNANNOUNCED = {
    "deactivated by QuerySet.update": (_deactivated_by_update, _session),
    "a new password by QuerySet.update": (_password_changed_by_update, _session),
    "its session row deleted": (_session_row_deleted, _session),
    "its API token's row deleted by raw SQL": (_token_row_deleted, _token),
    "its membership deleted by raw SQL": (_membership_row_deleted, _session),
}
RECHECK_SECONDS = 0.5


@pytest.mark.parametrize("case", UNANNOUNCED)
async def test_a_change_no_signal_announces_closes_the_socket_within_the_recheck_period(settings, user, chat, case):
    """Before, such a change was never noticed: 355 deltas in 15 s, and the socket stayed open."""
    change, sign_in = UNANNOUNCED[case]
    settings.MOTHERSHIP_SOCKET_RECHECK_SECONDS = RECHECK_SECONDS
    credential, scope = await database_sync_to_async(sign_in)(user)
    communicator = await _subscribed(user, chat, **scope)
    deltas = asyncio.create_task(_deltas_to(chat))
    try:
        # Given: a socket that keeps its subscription and its deltas over several checks.
        before = await _outputs(communicator, seconds=3 * RECHECK_SECONDS)
        assert [f["type"] for f in before].count("stream.delta") > 10
        await communicator.send_json_to({"type": "ping"})
        assert {"type": "pong"} in await _outputs(communicator, seconds=0.5)

        # When: access is withdrawn behind the app's back.
        changed_at = time.monotonic()
        await database_sync_to_async(change)(user, chat, credential)

        # Then: within the period the socket is told, closed with 4403, and sent nothing more.
        frames = await _outputs(communicator, seconds=RECHECK_SECONDS + 2, until_closed=True)
        assert frames[-1] == {"type": "websocket.close", "code": 4403}, frames[-3:]
        assert time.monotonic() - changed_at < RECHECK_SECONDS + 1.5
        forbidden = [i for i, f in enumerate(frames) if f.get("code") == "forbidden"]
        assert forbidden and frames[forbidden[0]]["conversationId"] == str(chat.id)
        assert all(f.get("type") == "error" for f in frames[forbidden[0] : -1])  # no delta after it
        assert await communicator.receive_nothing(timeout=3 * RECHECK_SECONDS)  # and none later
    finally:
        deltas.cancel()


async def _deltas_to(chat) -> None:
    """A delta on the chat's group every 20 ms, as a streaming turn sends them."""
    stream_id = uuid.uuid4()
    for seq in itertools.count(1):
        event = events.stream_event(type=events.DELTA, chat_id=chat.id, stream_id=stream_id, seq=seq, text="x")
        await asyncio.to_thread(groups.publish, groups.chat_group(chat.id), events.group_message(event))
        await asyncio.sleep(0.02)


async def _outputs(communicator, *, seconds: float, until_closed: bool = False) -> list[dict]:
    """What the socket sends for ``seconds`` (or up to its close, then the last item): a
    communicator's ``receive_output`` that times out would cancel the consumer, so it waits only
    for what is there."""
    outputs, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await communicator.receive_nothing(timeout=0.05, interval=0.01):
            continue
        output = await communicator.receive_output(timeout=1)
        if output["type"] == "websocket.close":
            assert until_closed, output
            return [*outputs, output]
        outputs.append(json.loads(output["text"]))
    return outputs


def test_the_periodic_check_is_one_query_for_the_user_its_credential_and_its_subscriptions(user, chat, workspace):
    key, _scope = _session(user)
    grants = {
        "chat": ("chat", str(chat.id), {"conversationId": str(chat.id)}),
        "workspace": ("workspace", str(workspace.id), {"workspaceId": str(workspace.id)}),
        "gone": ("chat", str(uuid.uuid4()), {}),
    }
    with CaptureQueriesContext(connection) as queries:
        signed_in, held = access.socket_access(user_id=user.pk, session_key=key, token_key=None, grants=grants)
    assert (signed_in, held, len(queries)) == (True, {"chat", "workspace"}, 1)

    token = Token.objects.create(user=user).key
    with CaptureQueriesContext(connection) as queries:
        assert access.socket_access(user_id=user.pk, session_key=None, token_key=token, grants=grants)[0]
    assert len(queries) == 1
