"""Roles that mean something: owners may do everything in their workspace; members read, chat and
stop any turn, and close or change warming only in chats they created; non-members get 404. The
admin's actions need the matching model permission."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from chats.models import Chat, Membership
from chats.selectors import MANAGE_REFUSED
from mothership.consumers import MothershipConsumer
from tests import factories
from warming.models import WarmingSchedule

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def team(workspace, user, turns_not_enqueued):
    """alice owns the workspace; bob and carol are members; bob made one chat, alice another."""
    bob = factories.MembershipFactory(workspace=workspace, user__username="bob", role=Membership.Role.MEMBER).user
    carol = factories.MembershipFactory(workspace=workspace, user__username="carol", role=Membership.Role.MEMBER).user
    clients = {}
    for person in (user, bob, carol):
        clients[person.username] = APIClient()
        clients[person.username].force_authenticate(person)
    bobs = clients["bob"].post("/api/mothership/chats", {"workspace": str(workspace.id), "title": "bob's"}, format="json")
    assert bobs.status_code == 201, bobs.content
    alices = factories.ChatFactory(workspace=workspace, created_by=user)
    return clients, Chat.objects.get(pk=bobs.json()["id"]), alices


def test_a_member_closes_and_warms_only_the_chats_they_created(team):
    clients, bobs, alices = team
    carol, bob = clients["carol"], clients["bob"]
    refused = carol.post(f"/api/mothership/chats/{bobs.id}/close")
    assert refused.status_code == 403 and refused.json()["detail"] == MANAGE_REFUSED
    assert carol.put(f"/api/mothership/chats/{bobs.id}/warming", {"enabled": True}, format="json").status_code == 403
    assert not WarmingSchedule.objects.filter(chat=bobs, enabled=True).exists()
    assert Chat.objects.get(pk=bobs.pk).closed_at is None

    # Reading, chatting and stopping stay open to every member.
    assert carol.get(f"/api/mothership/chats/{bobs.id}/warming").status_code == 200
    sent = carol.post(f"/api/mothership/chats/{bobs.id}/messages", {"content": "hi"}, format="json")
    assert sent.status_code == 201
    stopped = carol.post(f"/api/mothership/chats/{bobs.id}/cancel", {"stream_id": sent.json()["stream_id"]}, format="json")
    assert stopped.status_code == 200 and stopped.json()["cancelled"] is True

    # Its creator may; so may an owner, in any chat of the workspace; a member not in another's.
    assert bob.put(f"/api/mothership/chats/{bobs.id}/warming", {"enabled": True}, format="json").status_code == 200
    assert bob.post(f"/api/mothership/chats/{alices.id}/close").status_code == 403
    assert clients["alice"].post(f"/api/mothership/chats/{bobs.id}/close").status_code == 200


def test_non_members_still_get_404(team):
    _clients, bobs, _alices = team
    stranger = APIClient()
    stranger.force_authenticate(factories.UserFactory())
    assert stranger.post(f"/api/mothership/chats/{bobs.id}/close").status_code == 404
    assert stranger.put(f"/api/mothership/chats/{bobs.id}/warming", {"enabled": True}, format="json").status_code == 404


async def test_on_the_socket_warming_of_anothers_chat_is_forbidden_and_changes_nothing(team):
    _clients, bobs, _alices = team
    carol = await database_sync_to_async(get_user_model().objects.get)(username="carol")
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = carol
    assert (await communicator.connect())[0]
    for action, payload in (("set-enabled", True), ("warm-now", None)):
        await communicator.send_json_to(
            {"type": "invoke", "surfaceId": "cache-warming", "conversationId": str(bobs.id), "action": action, "payload": payload}
        )
        frame = await communicator.receive_json_from(timeout=5)
        assert (frame["type"], frame["code"], frame["conversationId"]) == ("error", "forbidden", str(bobs.id)), frame
    await communicator.disconnect()
    assert not await database_sync_to_async(WarmingSchedule.objects.filter(chat=bobs, enabled=True).exists)()


def test_the_admins_actions_need_the_change_permission(team, client, make_user):
    _clients, bobs, _alices = team
    viewer = make_user("viewer")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_chat"))
    client.force_login(viewer)
    page = client.get("/admin/chats/chat/")
    assert page.status_code == 200 and b"close_chats" not in page.content  # not offered
    client.post("/admin/chats/chat/", {"action": "close_chats", "_selected_action": [str(bobs.pk)]})
    assert Chat.objects.get(pk=bobs.pk).closed_at is None  # nor run when posted anyway

    viewer.user_permissions.add(Permission.objects.get(codename="change_chat"))
    assert b"close_chats" in client.get("/admin/chats/chat/").content


def test_the_chat_page_offers_close_and_warming_only_to_those_who_may_use_them(team, client):
    _clients, bobs, _alices = team
    User = get_user_model()

    def page(username):
        client.force_login(User.objects.get(username=username))
        return client.get(f"/chats/{bobs.id}/").content.decode()

    for manager in ("bob", "alice"):  # the creator; an owner
        html = page(manager)
        assert 'id="close-chat"' in html and 'data-can-manage="true"' in html and 'id="warming-managers"' not in html
    html = page("carol")
    assert 'id="close-chat"' not in html and 'data-can-manage="false"' in html
    assert 'id="warming-managers"' in html
    for control in ('id="warming-enabled"', 'id="warming-interval"', 'id="warming-now"'):
        tag = html[html.index(control) : html.index(">", html.index(control))]
        assert "disabled" in tag, tag
