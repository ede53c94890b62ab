"""Chats from before branches migrate as one branch each: every message follows the one before it."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chats import search
from chats.selectors import chat_branch, conversation_prefix

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("chats", "0012_branches_archive_pin")]
AFTER = [("chats", "0013_messages_as_one_branch")]


@pytest.fixture
def migrations_restored():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # every later migration again, for the tests after
    search.index_ensure(connection.alias)  # as post_migrate does: SQLite's search triggers and index


def test_linear_chats_become_one_branch_each_and_are_sent_as_before(migrations_restored):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Workspace, Chat, Message = (old.get_model("chats", name) for name in ("Workspace", "Chat", "Message"))
    workspace = Workspace.objects.create(name="w")
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    chats = {}
    for name, count in (("long", 5), ("short", 2), ("empty", 0)):
        chat = Chat.objects.create(workspace=workspace, title=name, updated_at=start)
        rows = [Message(chat=chat, role="user" if i % 2 == 0 else "assistant", content=f"{name} {i}") for i in range(count)]
        Message.objects.bulk_create(rows)
        for i, row in enumerate(rows):  # written in order (auto_now_add would give them all one time)
            Message.objects.filter(pk=row.pk).update(created_at=start + datetime.timedelta(seconds=i))
        chats[name] = (chat.pk, [row.pk for row in rows])

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # today's code reads today's tables (attachments)

    from chats.models import Chat as NewChat
    from chats.models import Message as NewMessage

    for name, (chat_id, ids) in chats.items():
        parents = dict(NewMessage.objects.filter(chat_id=chat_id).values_list("id", "parent_id"))
        assert [parents[pk] for pk in ids] == [None, *ids[:-1]][: len(ids)], name
        path, siblings = chat_branch(chat=NewChat.objects.get(pk=chat_id))
        assert path == ids and all(siblings[pk] == [pk] for pk in ids)
        assert [m["content"] for m in conversation_prefix(chat_id=chat_id)] == [f"{name} {i}" for i in range(len(ids))]
