"""Live tiles: a workspace subscription receives each chat's tile as it changes."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chats.services import chat_create, chat_rename
from mothership.consumers import MothershipConsumer
from streams.services import stream_cancel, stream_start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_worker(turns_not_enqueued):
    return turns_not_enqueued


async def _dashboard(user, workspace) -> WebsocketCommunicator:
    tab = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    tab.scope["user"] = user
    assert (await tab.connect())[0]
    await tab.send_json_to({"type": "subscribe", "workspaceId": str(workspace.id)})
    assert await tab.receive_json_from(timeout=5) == {"type": "subscribed", "workspaceId": str(workspace.id)}
    return tab


async def test_tiles_follow_a_turn_from_yellow_to_its_end_and_new_chats_appear(user, workspace, chat):
    tab = await _dashboard(user, workspace)
    turn = await database_sync_to_async(stream_start)(chat=chat, content="hello")
    tile = await tab.receive_json_from(timeout=5)
    assert (tile["type"], tile["conversationId"], tile["state"]) == ("tile", str(chat.id), "streaming")
    assert tile["activeStreamId"] == str(turn.stream.id) and tile["title"] == chat.title
    # The pushed markup is the dashboard's own template (one definition of a tile and its labels)
    assert f'data-chat-id="{chat.id}"' in tile["html"] and 'data-state="streaming"' in tile["html"]

    await database_sync_to_async(stream_cancel)(chat=chat, stream_id=turn.stream.id)
    tile = await tab.receive_json_from(timeout=5)
    assert (tile["state"], tile["activeStreamId"]) == ("cancelled", None)

    other = await database_sync_to_async(chat_create)(workspace=workspace, title="brand new")
    tile = await tab.receive_json_from(timeout=5)
    assert (tile["conversationId"], tile["title"], tile["state"]) == (str(other.id), "brand new", "idle")
    await tab.disconnect()


async def test_renaming_a_chat_pushes_its_tile_with_the_new_title(user, workspace, chat):
    tab = await _dashboard(user, workspace)
    await database_sync_to_async(chat_rename)(chat=chat, title="Quarterly plan")
    tile = await tab.receive_json_from(timeout=5)
    assert (tile["type"], tile["conversationId"], tile["title"]) == ("tile", str(chat.id), "Quarterly plan")
    assert "Quarterly plan" in tile["html"]
    await tab.disconnect()


def test_a_rename_reads_nothing_for_tiles_nobody_watches(chat):
    """The receiver hands on the workspace it was told: with no dashboard open, the push costs no query."""
    with CaptureQueriesContext(connection) as queries:
        chat_rename(chat=chat, title="Quarterly plan")
    statements = [q["sql"].split(None, 1)[0].upper() for q in queries.captured_queries]
    assert [s for s in statements if s in ("SELECT", "INSERT", "UPDATE", "DELETE")] == ["UPDATE"]


async def test_a_workspace_of_someone_else_is_not_found(make_user, workspace):
    stranger = await database_sync_to_async(make_user)("stranger")
    tab = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    tab.scope["user"] = stranger
    assert (await tab.connect())[0]
    for workspace_id in (str(workspace.id), str(uuid.uuid4()), "nope"):
        await tab.send_json_to({"type": "subscribe", "workspaceId": workspace_id})
        reply = await tab.receive_json_from(timeout=5)
        assert reply["type"] == "error" and reply["code"] in ("not_found", "bad_request")
    await tab.disconnect()


async def test_a_warming_change_pushes_only_the_badge(user, workspace, chat):
    from warming.services import warming_update

    tab = await _dashboard(user, workspace)
    await database_sync_to_async(warming_update)(chat=chat, enabled=True, interval_seconds=120)
    badge = await tab.receive_json_from(timeout=5)
    assert (badge["type"], badge["conversationId"], badge["workspaceId"]) == ("tile.warming", str(chat.id), str(workspace.id))
    assert badge["warming"]["enabled"] is True and badge["warming"]["nextWarmAt"] > 0
    assert await tab.receive_nothing(timeout=0.2)
    await tab.disconnect()


async def test_a_turn_no_worker_has_taken_shows_queued_until_one_claims_it(user, workspace, chat, settings):
    from streams.services.run import _claim

    tab = await _dashboard(user, workspace)
    turn = await database_sync_to_async(stream_start)(chat=chat, content="every worker is busy")
    tile = await tab.receive_json_from(timeout=5)
    assert tile["state"] == "streaming" and "queued — waiting for a worker" in tile["html"]

    await database_sync_to_async(_claim)(turn.stream.id)  # a worker takes it
    tile = await tab.receive_json_from(timeout=5)
    assert tile["state"] == "streaming" and "queued" not in tile["html"]
    await tab.disconnect()


def test_a_tile_is_neither_read_nor_rendered_when_no_dashboard_is_open(chat, django_assert_num_queries):
    from mothership.tiles import tile_push

    with django_assert_num_queries(1):  # the chat's workspace, then PUBSUB NUMSUB says nobody listens
        tile_push(chat_id=chat.id)
