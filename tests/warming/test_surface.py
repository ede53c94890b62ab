"""The cache-warming surface over /ws/ and the warming HTTP API (seeds/dispatch-…, CR-4a/b/d)."""

from __future__ import annotations

import time
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator

from mothership.consumers import MothershipConsumer
from warming.models import WarmingSchedule

pytestmark = pytest.mark.django_db(transaction=True)
SURFACE = "cache-warming"


async def _socket(user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    return communicator


async def _subscribe(communicator, chat) -> dict:
    await communicator.send_json_to({"type": "subscribe", "surfaceId": SURFACE, "conversationId": str(chat.id)})
    return await communicator.receive_json_from(timeout=5)


async def _invoke(communicator, chat, action, **payload):
    frame = {"type": "invoke", "surfaceId": SURFACE, "conversationId": str(chat.id), "action": action, **payload}
    await communicator.send_json_to(frame)
    return await communicator.receive_json_from(timeout=5)


async def test_a_new_conversation_is_off_with_no_warm_scheduled_and_the_surface_echoes_the_conversation(user, chat):
    tab = await _socket(user)
    surface = await _subscribe(tab, chat)
    await tab.disconnect()
    assert surface["type"] == "surface" and surface["surfaceId"] == SURFACE
    assert surface["conversationId"] == str(chat.id)  # CR-4d
    fields = surface["fields"]
    assert fields["enabled"] is False and fields["timer"] == {"nextWarmAt": None, "lastWarmAt": None}  # CR-4a
    assert fields["interval_seconds"] == 240 and fields["warmCount"] == 0 and fields["stopReason"] is None
    assert not await database_sync_to_async(WarmingSchedule.objects.filter(chat=chat).exists)()  # created lazily


async def test_every_tab_gets_every_update_with_a_future_next_warm(user, chat):
    tabs = [await _socket(user) for _ in range(2)]
    for tab in tabs:
        await _subscribe(tab, chat)
    before = time.time() * 1000

    await tabs[0].send_json_to(
        {"type": "invoke", "surfaceId": SURFACE, "conversationId": str(chat.id), "action": "set-interval", "payload": 60}
    )
    await tabs[0].send_json_to(
        {"type": "invoke", "surfaceId": SURFACE, "conversationId": str(chat.id), "action": "set-enabled", "payload": True}
    )

    for tab in tabs:
        first, second = await tab.receive_json_from(timeout=5), await tab.receive_json_from(timeout=5)
        assert first["type"] == second["type"] == "update"
        assert first["conversationId"] == second["conversationId"] == str(chat.id)
        assert first["fields"]["interval_seconds"] == 60 and first["fields"]["enabled"] is False
        assert second["fields"]["enabled"] is True
        assert second["fields"]["timer"]["nextWarmAt"] >= before + 60_000 - 1000  # in the future: now + interval
        assert await tab.receive_nothing(timeout=0.1)
        await tab.disconnect()


@pytest.mark.parametrize("payload", [{}, {"payload": "true"}, {"payload": 1}, {"payload": None}])
async def test_set_enabled_without_an_explicit_boolean_is_refused_and_never_flips(user, chat, payload):
    tab = await _socket(user)
    await _subscribe(tab, chat)
    error = await _invoke(tab, chat, "set-enabled", **payload)
    await tab.disconnect()
    assert error["type"] == "error" and error["code"] == "bad_payload" and error["message"]
    assert error["conversationId"] == str(chat.id) and error["surfaceId"] == SURFACE
    assert not await database_sync_to_async(WarmingSchedule.objects.filter(chat=chat, enabled=True).exists)()


async def test_legacy_toggle_without_a_payload_still_flips(user, chat):
    tab = await _socket(user)
    await _subscribe(tab, chat)
    on = await _invoke(tab, chat, "toggle")
    off = await _invoke(tab, chat, "toggle")
    explicit = await _invoke(tab, chat, "toggle", payload=False)
    await tab.disconnect()
    assert (on["fields"]["enabled"], off["fields"]["enabled"], explicit["fields"]["enabled"]) == (True, False, False)
    assert off["fields"]["timer"]["nextWarmAt"] is None


@pytest.mark.parametrize("payload", [29, 3301, "240", 240.5, True, None])
async def test_set_interval_out_of_range_or_not_an_integer_is_refused_with_a_message(user, chat, payload):
    tab = await _socket(user)
    await _subscribe(tab, chat)
    error = await _invoke(tab, chat, "set-interval", payload=payload)
    await tab.disconnect()
    assert (error["type"], error["code"]) == ("error", "bad_payload")
    assert "between 30 and 3300" in error["message"]


async def test_unknown_action_and_non_member_are_errors_that_keep_the_socket_open(user, make_user, chat):
    tab = await _socket(user)
    assert (await _invoke(tab, chat, "explode"))["code"] == "unknown_action"
    stranger = await _socket(await database_sync_to_async(make_user)("stranger"))
    assert (await _subscribe(stranger, chat))["code"] == "not_found"
    assert (await _invoke(stranger, chat, "set-enabled", payload=True))["code"] == "not_found"
    await stranger.send_json_to({"type": "ping"})
    assert (await stranger.receive_json_from(timeout=5))["type"] == "pong"
    await stranger.disconnect()
    await tab.disconnect()
    assert not await database_sync_to_async(WarmingSchedule.objects.filter(chat=chat, enabled=True).exists)()


async def test_an_invoke_from_a_socket_not_subscribed_is_answered_on_that_socket(user, chat):
    tab = await _socket(user)
    update = await _invoke(tab, chat, "set-enabled", payload=True)
    await tab.disconnect()
    assert update["type"] == "update" and update["conversationId"] == str(chat.id) and update["fields"]["enabled"] is True


# --- HTTP -------------------------------------------------------------------------------


def test_http_get_and_put_answer_the_surface_fields(api, chat):
    url = f"/api/mothership/chats/{chat.id}/warming"
    assert api.get(url).json()["enabled"] is False
    response = api.put(url, {"enabled": True, "interval_seconds": 120}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["enabled"] is True and body["interval_seconds"] == 120
    assert body["timer"]["nextWarmAt"] > time.time() * 1000 + 110_000
    assert api.get(url).json() == body
    off = api.put(url, {"enabled": False}, format="json").json()
    assert off["enabled"] is False and off["timer"]["nextWarmAt"] is None and off["interval_seconds"] == 120


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"enabled": "yes"},
        {"enabled": 1},
        {"enabled": None},
        {"interval_seconds": None},
        {"interval_seconds": 10},
        {"interval_seconds": "60"},
        {"interval_seconds": 60.5},
        {"colour": "red"},
        [1],
    ],
)
def test_http_put_refuses_bad_input_with_a_400_and_changes_nothing(api, chat, body):
    response = api.put(f"/api/mothership/chats/{chat.id}/warming", body, format="json")
    assert response.status_code == 400 and response.json()["detail"]
    assert not WarmingSchedule.objects.filter(chat=chat, enabled=True).exists()


def test_http_warming_is_404_for_non_members(make_user, chat):
    from rest_framework.test import APIClient

    stranger = APIClient()
    stranger.force_authenticate(make_user("stranger"))
    assert stranger.get(f"/api/mothership/chats/{chat.id}/warming").status_code == 404
    assert stranger.put(f"/api/mothership/chats/{chat.id}/warming", {"enabled": True}, format="json").status_code == 404
    assert stranger.get(f"/api/mothership/chats/{uuid.uuid4()}/warming").status_code == 404


async def test_close_pushes_enabled_false_with_stop_reason_closed_and_reenabling_clears_it(api, user, chat):
    tab = await _socket(user)
    await _subscribe(tab, chat)
    await _invoke(tab, chat, "set-enabled", payload=True)

    closed = await database_sync_to_async(api.post)(f"/api/mothership/chats/{chat.id}/close", {}, format="json")

    assert closed.json()["warming_disabled"] is True
    update = await tab.receive_json_from(timeout=5)
    assert update["type"] == "update" and update["conversationId"] == str(chat.id)
    assert update["fields"]["enabled"] is False and update["fields"]["stopReason"] == "closed"
    assert update["fields"]["timer"]["nextWarmAt"] is None
    again = await _invoke(tab, chat, "set-enabled", payload=True)
    await tab.disconnect()
    assert again["fields"]["enabled"] is True and again["fields"]["stopReason"] is None
