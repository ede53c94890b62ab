"""No title needed: a chat made without one is called "New chat" until its first message names it
(the first line with text, trimmed); its creator or an owner renames it (PATCH), and every open
dashboard's tile follows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from chats.models import UNTITLED, Chat, title_from
from streams import locks
from tests import factories

pytestmark = pytest.mark.django_db


def _send(api, chat_id, content):
    answer = api.post(f"/api/mothership/chats/{chat_id}/messages", {"content": content}, format="json")
    assert answer.status_code == 201, answer.content
    locks.lock_release(chat_id=chat_id, stream_id=answer.json()["stream_id"])


def test_an_untitled_chat_is_named_by_its_first_message_only(api, workspace, turns_not_enqueued):
    made = api.post("/api/mothership/chats", {"workspace": str(workspace.id)}, format="json")
    assert made.status_code == 201 and made.json()["title"] == UNTITLED
    chat_id = made.json()["id"]
    with CaptureQueriesContext(connection) as queries:
        _send(api, chat_id, "\n  How do I rotate the API keys?  \nDetails follow.")
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE") and "title" in q["sql"]][1:]
    assert Chat.objects.get(pk=chat_id).title == "How do I rotate the API keys?"
    _send(api, chat_id, "A second message")
    assert Chat.objects.get(pk=chat_id).title == "How do I rotate the API keys?"  # only the first names it


def test_a_titled_chat_keeps_its_title(api, workspace, turns_not_enqueued):
    made = api.post("/api/mothership/chats", {"workspace": str(workspace.id), "title": "Budget"}, format="json").json()
    _send(api, made["id"], "hello")
    assert Chat.objects.get(pk=made["id"]).title == "Budget"


def test_title_from_trims_and_shortens():
    assert title_from("   \n\n") == UNTITLED
    long = title_from("x" * 200)
    assert len(long) == 80 and long.endswith("…")


def test_the_dashboard_form_needs_no_title(client, user, workspace):
    client.force_login(user)
    answer = client.post("/chats/new", {"workspace": str(workspace.id), "title": ""})
    chat = Chat.objects.get(workspace=workspace)
    assert answer.status_code == 302 and chat.title == UNTITLED and chat.title_set is False


def test_rename_is_for_the_creator_and_owners(api, user, workspace):
    chat = factories.ChatFactory(workspace=workspace, created_by=user, title="old")
    renamed = api.patch(f"/api/mothership/chats/{chat.id}", {"title": "  new name "}, format="json")
    assert renamed.status_code == 200 and renamed.json()["title"] == "new name"
    member = factories.MembershipFactory(workspace=workspace).user
    client = APIClient()
    client.force_authenticate(member)
    assert client.patch(f"/api/mothership/chats/{chat.id}", {"title": "mine"}, format="json").status_code == 403
    for bad in ({}, {"title": ""}, {"title": 5}, {"colour": "red"}):
        answer = api.patch(f"/api/mothership/chats/{chat.id}", bad, format="json")
        assert answer.status_code == 400 and answer.json()["detail"], bad
    assert Chat.objects.get(pk=chat.pk).title == "new name"
