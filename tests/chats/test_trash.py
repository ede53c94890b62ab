"""The trash: ``DELETE /api/mothership/chats/<id>`` (204), gone from every list and page, restorable
for MOTHERSHIP_TRASH_DAYS, then purged by the beat (the spend ledger kept)."""

from __future__ import annotations

import datetime
import io
import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from chats.models import Chat, Membership, Message
from chats.selectors import TRASH_REFUSED
from mothership import tiles
from mothership.celery import beat_schedule, route_task
from mothership.consumers import MothershipConsumer
from mothership.services import trash_purge
from spend.models import Charge
from spend.services import charge_record
from streams import locks
from streams.models import Stream
from streams.services import stream_start
from tests import factories
from warming.models import WarmingSchedule

pytestmark = pytest.mark.django_db


def _trashed(chat, *, days_ago: float) -> Chat:
    Chat.objects.filter(pk=chat.pk).update(deleted_at=timezone.now() - datetime.timedelta(days=days_ago))
    chat.refresh_from_db()
    return chat


def _member(workspace, role=Membership.Role.MEMBER):
    person = factories.MembershipFactory(workspace=workspace, role=role).user
    client = APIClient()
    client.force_authenticate(person)
    return person, client


def test_delete_is_a_204_and_the_chat_is_gone_from_the_list_the_detail_the_page_and_sends(api, client, user, chat):
    # given a chat its owner can see
    assert [c["id"] for c in api.get("/api/mothership/chats").json()] == [str(chat.id)]

    # when it is deleted
    answer = api.delete(f"/api/mothership/chats/{chat.id}")

    # then it is in the trash and 404 everywhere a member reads or writes it
    assert answer.status_code == 204
    assert Chat.objects.get(pk=chat.pk).deleted_at is not None
    assert api.get("/api/mothership/chats").json() == []
    assert api.get(f"/api/mothership/chats/{chat.id}").status_code == 404
    assert api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "hi"}, format="json").status_code == 404
    assert api.get(f"/api/mothership/chats/{chat.id}/warming").status_code == 404
    assert api.post(f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": str(uuid.uuid4())}, format="json").status_code == 404
    assert api.post(f"/api/mothership/chats/{chat.id}/close").status_code == 404
    assert api.delete(f"/api/mothership/chats/{chat.id}").status_code == 404  # already in the trash
    assert not Message.objects.filter(chat=chat).exists()
    client.force_login(user)
    assert client.get(f"/chats/{chat.id}/").status_code == 404
    assert str(chat.id) not in client.get("/").content.decode()


def test_restore_brings_it_back_as_it_was(api, chat):
    factories.MessageFactory(chat=chat, content="kept")
    assert api.delete(f"/api/mothership/chats/{chat.id}").status_code == 204

    answer = api.post(f"/api/mothership/chats/{chat.id}/restore")

    assert answer.status_code == 200 and answer.json()["id"] == str(chat.id)
    assert Chat.objects.get(pk=chat.pk).deleted_at is None
    assert [c["id"] for c in api.get("/api/mothership/chats").json()] == [str(chat.id)]
    assert [m["content"] for m in api.get(f"/api/mothership/chats/{chat.id}").json()["messages"]] == ["kept"]
    # a chat not in the trash has nothing to restore
    assert api.post(f"/api/mothership/chats/{chat.id}/restore").status_code == 404


def test_restore_after_the_window_is_refused_with_410_and_a_message(api, chat, settings):
    settings.MOTHERSHIP_TRASH_DAYS = 30
    _trashed(chat, days_ago=31)

    answer = api.post(f"/api/mothership/chats/{chat.id}/restore")

    assert answer.status_code == 410
    assert "more than 30 days ago" in answer.json()["detail"]
    assert Chat.objects.get(pk=chat.pk).deleted_at is not None
    # within it, it comes back
    _trashed(chat, days_ago=29)
    assert api.post(f"/api/mothership/chats/{chat.id}/restore").status_code == 200


def test_non_members_get_404_for_delete_and_restore(chat):
    stranger = APIClient()
    stranger.force_authenticate(factories.UserFactory())
    assert stranger.delete(f"/api/mothership/chats/{chat.id}").status_code == 404
    assert Chat.objects.get(pk=chat.pk).deleted_at is None
    _trashed(chat, days_ago=1)
    assert stranger.post(f"/api/mothership/chats/{chat.id}/restore").status_code == 404
    assert Chat.objects.get(pk=chat.pk).deleted_at is not None


def test_a_member_who_is_neither_creator_nor_owner_gets_403_with_a_message(workspace, user):
    # given bob's chat in alice's workspace, and carol, another member
    bob, bobs_client = _member(workspace)
    _carol, carol = _member(workspace)
    bobs = factories.ChatFactory(workspace=workspace, created_by=bob)

    refused = carol.delete(f"/api/mothership/chats/{bobs.id}")
    assert (refused.status_code, refused.json()["detail"]) == (403, TRASH_REFUSED)
    assert Chat.objects.get(pk=bobs.pk).deleted_at is None

    # its creator may, and so may an owner (alice) restore it
    assert bobs_client.delete(f"/api/mothership/chats/{bobs.id}").status_code == 204
    assert carol.post(f"/api/mothership/chats/{bobs.id}/restore").status_code == 403
    owner = APIClient()
    owner.force_authenticate(user)
    assert owner.post(f"/api/mothership/chats/{bobs.id}/restore").status_code == 200


def test_delete_with_a_live_turn_stops_exactly_that_turn_and_turns_warming_off(api, chat, turns_not_enqueued):
    # given a turn in flight and warming on
    sent = api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "hi"}, format="json")
    assert sent.status_code == 201
    stream_id = sent.json()["stream_id"]
    finished = factories.StreamFactory(chat=chat)  # an older turn, already over
    WarmingSchedule.objects.update_or_create(chat=chat, defaults={"enabled": True})

    # when the chat is deleted
    assert api.delete(f"/api/mothership/chats/{chat.id}").status_code == 204

    # then the live turn was stopped (owner-aware: by its id), the finished one left alone
    stream = Stream.objects.get(pk=stream_id)
    assert stream.status == Stream.Status.CANCELLED and stream.reason == "deleted"
    assert Stream.objects.get(pk=finished.pk).status == Stream.Status.COMPLETED
    assert Chat.objects.get(pk=chat.pk).active_stream_id is None
    schedule = WarmingSchedule.objects.get(chat=chat)
    assert (schedule.enabled, schedule.stop_reason) == (False, "deleted")


def test_every_open_dashboard_drops_the_tile_and_gets_it_back_on_restore(
    api, chat, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(tiles.groups, "publish", lambda group, message: sent.append(message["tile"]))
    monkeypatch.setattr(tiles.groups, "has_listeners", lambda group: True)

    with django_capture_on_commit_callbacks(execute=True):
        api.delete(f"/api/mothership/chats/{chat.id}")
    assert sent == [{"type": "tile.removed", "workspaceId": str(chat.workspace_id), "conversationId": str(chat.id)}]

    # a turn that seals after the delete does not bring the tile back
    tiles.tile_push(chat_id=chat.pk)
    assert len(sent) == 1

    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/mothership/chats/{chat.id}/restore")
    assert sent[-1]["type"] == "tile" and sent[-1]["conversationId"] == str(chat.id)


def test_a_turn_that_was_authorised_before_the_delete_cannot_start_in_the_trash(chat, turns_not_enqueued):
    # given a send that passed the membership check, then the chat went to the trash
    _trashed(chat, days_ago=0)

    with pytest.raises(Chat.DoesNotExist):
        stream_start(chat=chat, content="hi")

    assert not Stream.objects.filter(chat=chat).exists() and not Message.objects.filter(chat=chat).exists()
    assert locks.lock_owner(chat_id=chat.pk) is None  # the lock it took is given back


@pytest.mark.django_db(transaction=True)
async def test_a_socket_subscribe_to_a_trashed_chat_is_an_error_frame_not_found(user, chat):
    await database_sync_to_async(_trashed)(chat, days_ago=0)
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    frame = await communicator.receive_json_from(timeout=5)
    assert (frame["type"], frame["code"], frame["conversationId"]) == ("error", "not_found", str(chat.id)), frame
    await communicator.disconnect()


@pytest.fixture
def trash(workspace, user):
    """An old trashed chat (with messages, a stream and a charge), a recent one, and a live one."""
    old = factories.ChatFactory(workspace=workspace, created_by=user, title="old")
    stream = factories.StreamFactory(chat=old)
    charge_record(
        charge_id=stream.pk,
        kind="turn",
        workspace_id=workspace.pk,
        user_id=user.pk,
        chat_id=old.pk,
        model="m",
        tokens={"input_tokens": 10, "output_tokens": 5},
        estimated=False,
        cost_nanousd=1234,
        at=timezone.now(),
    )
    recent = factories.ChatFactory(workspace=workspace, created_by=user, title="recent")
    factories.StreamFactory(chat=recent)
    live = factories.ChatFactory(workspace=workspace, created_by=user, title="live")
    factories.StreamFactory(chat=live)
    return _trashed(old, days_ago=31), _trashed(recent, days_ago=2), live, stream


def test_the_purge_removes_the_messages_and_streams_of_old_trash_only_and_keeps_the_ledger(trash, settings):
    settings.MOTHERSHIP_TRASH_DAYS = 30
    old, recent, live, stream = trash

    outcome = trash_purge()

    assert (outcome["chats"], outcome["messages"], outcome["streams"]) == (1, 2, 1)
    assert not Chat.objects.filter(pk=old.pk).exists()
    assert not Message.objects.filter(chat_id=old.pk).exists()
    assert not Stream.objects.filter(chat_id=old.pk).exists()
    for kept in (recent, live):
        assert Message.objects.filter(chat=kept).count() == 2 and Stream.objects.filter(chat=kept).count() == 1
    charge = Charge.objects.get(pk=stream.pk)  # the money was spent: the ledger keeps it
    assert (charge.cost_nanousd, charge.chat_id, charge.workspace_id) == (1234, None, old.workspace_id)


def test_the_purge_is_a_beat_task_on_the_background_queue(settings):
    entry = beat_schedule()["trash-purge"]
    assert entry["task"] == "mothership.purge_trash"
    assert route_task(entry["task"], (), {}, {}) is not None  # not the turn queue


def test_purge_trash_command_dry_run_changes_nothing_and_json_says_what_was_purged(trash, settings):
    settings.MOTHERSHIP_TRASH_DAYS = 30
    old, recent, _live, _stream = trash

    out = io.StringIO()
    call_command("purge_trash", "--dry-run", "--json", stdout=out)
    dry = json.loads(out.getvalue())
    assert (dry["dry_run"], dry["chats"], dry["chat_ids"]) == (True, 1, [str(old.pk)])
    assert Chat.objects.filter(pk=old.pk).exists()

    out = io.StringIO()
    call_command("purge_trash", "--json", stdout=out)
    done = json.loads(out.getvalue())
    assert (done["dry_run"], done["chats"], done["streams"], done["chat_ids"]) == (False, 1, 1, [str(old.pk)])
    assert not Chat.objects.filter(pk=old.pk).exists() and Chat.objects.filter(pk=recent.pk).exists()

    out = io.StringIO()
    call_command("purge_trash", stdout=out)
    assert out.getvalue().startswith("purged 0 chats")


def test_the_admin_shows_the_trash_and_restores_and_purges_from_it(client, chat, workspace):
    admin_user = factories.UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    live = factories.ChatFactory(workspace=workspace, title="still here")
    _trashed(chat, days_ago=1)

    in_trash = client.get("/admin/chats/chat/?trash=yes").content.decode()
    assert str(chat.pk) in in_trash and str(live.pk) not in in_trash

    client.post("/admin/chats/chat/", {"action": "restore", "_selected_action": [str(chat.pk)]})
    assert Chat.objects.get(pk=chat.pk).deleted_at is None

    _trashed(chat, days_ago=1)
    client.post("/admin/chats/chat/", {"action": "purge", "_selected_action": [str(chat.pk), str(live.pk)]})
    assert not Chat.objects.filter(pk=chat.pk).exists()
    assert Chat.objects.filter(pk=live.pk).exists()  # only what is in the trash is purged
