"""No empty chats: a new chat is listed and kept once it has a first message; one left empty goes."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from chats.models import Chat
from chats.services import chat_create, chats_discard_unused, membership_add
from streams import locks
from streams.services import stream_start

pytestmark = pytest.mark.django_db


def test_new_chat_removes_the_chats_this_member_left_empty_and_keeps_the_rest(
    browser_client, user, workspace, make_user, turns_not_enqueued
):
    other = make_user("bob")
    membership_add(workspace=workspace, user=other)
    theirs = chat_create(workspace=workspace, created_by=other)  # another member's: not ours to remove
    browser_client.post("/chats/new", {"workspace": str(workspace.id)})
    left_empty = Chat.objects.get(workspace=workspace, created_by=user)
    used = chat_create(workspace=workspace, created_by=user)
    turn = stream_start(chat=used, content="hello")
    locks.lock_release(chat_id=used.pk, stream_id=turn.stream.id)

    answer = browser_client.post("/chats/new", {"workspace": str(workspace.id)})

    assert answer.status_code == 302
    assert not Chat.objects.filter(pk=left_empty.pk).exists()
    assert Chat.objects.filter(pk__in=[used.pk, theirs.pk]).count() == 2
    assert Chat.objects.filter(workspace=workspace, created_by=user).count() == 2  # the used one and the new one


def test_a_new_chat_is_listed_only_once_a_message_names_it_and_unused_ones_go_after_a_day(
    api, user, workspace, turns_not_enqueued
):
    untitled = chat_create(workspace=workspace, created_by=user)
    titled = chat_create(workspace=workspace, created_by=user, title="Planned")
    listed = lambda: {row["id"] for row in api.get("/api/mothership/chats", {"workspace": workspace.id}).json()}  # noqa: E731
    assert listed() == {str(titled.id)}

    turn = stream_start(chat=untitled, content="First words")
    locks.lock_release(chat_id=untitled.pk, stream_id=turn.stream.id)
    assert listed() == {str(titled.id), str(untitled.id)}

    old = timezone.now() - datetime.timedelta(days=2)
    unused, recent = chat_create(workspace=workspace, created_by=user), chat_create(workspace=workspace, created_by=user)
    Chat.objects.filter(pk__in=[unused.pk, untitled.pk, titled.pk]).update(created_at=old)
    assert chats_discard_unused() == 1
    assert set(Chat.objects.values_list("pk", flat=True)) == {untitled.pk, titled.pk, recent.pk}
