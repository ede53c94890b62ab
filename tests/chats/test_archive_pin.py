"""Archive and pin: pinned chats first on every list; archived ones out of the lists, behind a filter."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from chats import services as chat_services
from chats.models import Chat
from chats.services import chat_create, membership_add
from streams import locks
from streams.services import stream_start

pytestmark = pytest.mark.django_db


def _titles(response):
    assert response.status_code == 200, response.content
    return [row["title"] for row in response.json()]


@pytest.fixture
def three(workspace, user):
    """Three chats, the newest last."""
    now = timezone.now()
    chats = []
    for i, title in enumerate(("old", "middle", "new")):
        chat = chat_create(workspace=workspace, title=title, created_by=user)
        Chat.objects.filter(pk=chat.pk).update(updated_at=now - datetime.timedelta(seconds=10 - i))
        chats.append(chat)
    return chats


def test_a_pinned_chat_is_listed_first_once_and_unpinning_puts_it_back(api, browser_client, workspace, three):
    old, middle, new = three
    response = api.patch(f"/api/mothership/chats/{old.id}", {"pinned": True}, format="json")
    assert response.status_code == 200 and response.json()["pinned"] is True

    assert _titles(api.get("/api/mothership/chats", {"workspace": workspace.id})) == ["old", "new", "middle"]
    # Paged: the pinned head on the first page only, never twice.
    first = api.get("/api/mothership/chats", {"workspace": workspace.id, "limit": 1})
    assert _titles(first) == ["old", "new"]
    following = first.headers["Link"].split(";")[0].strip("<>")
    assert _titles(api.get(following)) == ["middle"]
    # The dashboard and the chat page's list agree.
    page = browser_client.get(f"/?workspace={workspace.id}").content.decode()
    assert page.index(str(old.id)) < page.index(str(new.id)) < page.index(str(middle.id))
    assert "pinned</span>" in page

    api.patch(f"/api/mothership/chats/{old.id}", {"pinned": False}, format="json")
    assert _titles(api.get("/api/mothership/chats", {"workspace": workspace.id})) == ["new", "middle", "old"]


def test_an_archived_chat_leaves_the_lists_is_behind_the_filter_and_a_send_brings_it_back(
    api, browser_client, workspace, three, turns_not_enqueued
):
    old, middle, new = three
    response = api.patch(f"/api/mothership/chats/{middle.id}", {"archived": True}, format="json")
    assert response.status_code == 200 and response.json()["archived"] is True

    assert _titles(api.get("/api/mothership/chats", {"workspace": workspace.id})) == ["new", "old"]
    assert _titles(api.get("/api/mothership/chats", {"workspace": workspace.id, "archived": 1})) == ["middle"]
    dashboard = browser_client.get(f"/?workspace={workspace.id}").content.decode()
    assert str(middle.id) not in dashboard and "archived=1" in dashboard
    assert str(middle.id) in browser_client.get(f"/?workspace={workspace.id}&archived=1").content.decode()
    opened = browser_client.get(f"/chats/{middle.id}/")  # still opens; Unarchive is on it
    assert opened.status_code == 200 and "Unarchive" in opened.content.decode()
    assert api.get(f"/api/mothership/chats/{middle.id}").json()["archived"] is True

    turn = stream_start(chat=middle, content="back to this")
    locks.lock_release(chat_id=middle.pk, stream_id=turn.stream.id)
    assert _titles(api.get("/api/mothership/chats", {"workspace": workspace.id}))[0] == "middle"


def test_who_may_archive_and_pin_and_what_bad_input_gets(api, workspace, three, make_user, monkeypatch):
    old, middle, new = three
    member, stranger = make_user("bob"), make_user("mallory")
    membership_add(workspace=workspace, user=member)
    as_member, as_stranger = APIClient(), APIClient()
    as_member.force_authenticate(member)
    as_stranger.force_authenticate(stranger)

    assert as_member.patch(f"/api/mothership/chats/{old.id}", {"archived": True}, format="json").status_code == 403
    assert as_member.patch(f"/api/mothership/chats/{old.id}", {"pinned": True}, format="json").status_code == 403
    assert as_stranger.patch(f"/api/mothership/chats/{old.id}", {"pinned": True}, format="json").status_code == 404
    assert api.patch(f"/api/mothership/chats/{old.id}", {"pinned": "yes"}, format="json").status_code == 400
    assert api.patch(f"/api/mothership/chats/{old.id}", {"archived": None}, format="json").status_code == 400
    assert api.get("/api/mothership/chats", {"archived": "maybe"}).status_code == 400
    assert Chat.objects.filter(pinned_at__isnull=False).count() == 0

    monkeypatch.setattr(chat_services, "MAX_PINNED", 2)
    assert api.patch(f"/api/mothership/chats/{old.id}", {"pinned": True}, format="json").status_code == 200
    assert api.patch(f"/api/mothership/chats/{middle.id}", {"pinned": True}, format="json").status_code == 200
    refused = api.patch(f"/api/mothership/chats/{new.id}", {"pinned": True}, format="json")
    assert refused.status_code == 409 and "unpin one first" in refused.json()["detail"]
    assert api.patch(f"/api/mothership/chats/{old.id}", {"pinned": True}, format="json").status_code == 200  # already: fine
