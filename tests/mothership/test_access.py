"""Access withdrawn at once, in process: each change that may shrink a user's access reaches their
open sockets through its receiver (``mothership/receivers.py``), and a change that shrinks nothing
closes nothing. The same over a real server and worker: ``tests/e2e/test_access_withdrawn.py``."""

from __future__ import annotations

from importlib import import_module

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from rest_framework.authtoken.models import Token

from chats.models import Membership
from mothership.consumers import MothershipConsumer

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
