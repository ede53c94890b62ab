"""Reads compiled once (``mothership.infra.prepared``): the same rows as Django's own, one statement."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chats import selectors as chat_selectors
from chats.attachments.service import attachment_upload
from chats.models import Chat
from mothership.infra.prepared import PreparedRead
from spend.models import Budget
from streams.models import Stream
from streams.services import run, start
from tests import factories

pytestmark = pytest.mark.django_db


def _same_instance(one, two, related: list[str]):
    assert type(one) is type(two)
    assert {k: v for k, v in one.__dict__.items() if k != "_state"} == {k: v for k, v in two.__dict__.items() if k != "_state"}
    assert two._state.db == one._state.db and two._state.adding is False
    for path in related:
        a, b = one, two
        for name in path.split("__"):
            a, b = getattr(a, name), getattr(b, name)
        assert {k: v for k, v in a.__dict__.items() if k != "_state"} == {k: v for k, v in b.__dict__.items() if k != "_state"}, (
            path
        )


@pytest.mark.parametrize("budget", [False, True], ids=["no budget", "a budget"])
@pytest.mark.parametrize("files", [False, True], ids=["no files", "a file"])
def test_the_turn_read_gives_what_djangos_gives_in_one_statement(workspace, user, budget, files):
    assert run.TURN_READ.prepare() is None
    if budget:
        Budget.objects.create(workspace=workspace, monthly_usd=Decimal("12.5"))
    stream = factories.StreamFactory(chat__workspace=workspace, started_by=user, status=Stream.Status.QUEUED)
    if files:
        upload = SimpleUploadedFile("notes.txt", b"a note", content_type="text/plain")
        stream.user_message.attachments.add(attachment_upload(chat=stream.chat, user=user, file=upload))
    with CaptureQueriesContext(connection) as queries:
        (prepared,) = run.TURN_READ.run(stream.pk)
    assert len(queries) == 1
    with CaptureQueriesContext(connection) as queries:  # everything it names was read with it
        prepared.user_message.content, prepared.chat.workspace.name  # noqa: B018
        assert (getattr(prepared.chat.workspace, "budget", None) is not None) is budget
    assert len(queries) == 0
    (ordinary,) = list(run._turn_read(stream.pk))
    _same_instance(
        ordinary, prepared, ["user_message", "chat", "chat__workspace"] + (["chat__workspace__budget"] if budget else [])
    )
    assert prepared.question_files is files
    assert run.TURN_READ.run(uuid.uuid4()) == []


def test_a_members_chat_and_nobody_elses(user, chat, make_user):
    stranger = make_user()
    with CaptureQueriesContext(connection) as queries:
        found = chat_selectors.chat_get_for_member(user=user, chat_id=str(chat.pk))
    assert len(queries) == 1
    with CaptureQueriesContext(connection) as queries:
        found.workspace.name  # noqa: B018
    assert len(queries) == 0
    _same_instance(Chat.objects.select_related("workspace").get(pk=chat.pk), found, ["workspace"])
    for who, chat_id in [(stranger, chat.pk), (user, uuid.uuid4()), (user, "not a uuid")]:
        with pytest.raises(chat_selectors.Http404):
            chat_selectors.chat_get_for_member(user=who, chat_id=str(chat_id))
    Chat.objects.filter(pk=chat.pk).update(deleted_at=chat.updated_at)  # in the trash: not found either
    with pytest.raises(chat_selectors.Http404):
        chat_selectors.chat_get_for_member(user=user, chat_id=str(chat.pk))


def test_the_shown_leaf_of_a_chat_without_one_is_its_newest_message(chat):
    assert start._shown_leaf(chat) == (None, None)
    factories.MessageFactory(chat=chat)
    newest = factories.MessageFactory(chat=chat)
    chat.refresh_from_db()
    assert start._shown_leaf(chat) == (None, newest.pk) == tuple(start._shown_leaf_read(chat.pk)[0])
    Chat.objects.filter(pk=chat.pk).update(deleted_at=chat.updated_at)
    with pytest.raises(Chat.DoesNotExist):
        start._shown_leaf(chat)


def test_a_shape_it_cannot_prepare_is_read_the_ordinary_way(chat):
    other = factories.ChatFactory(workspace=chat.workspace)
    by_limit = PreparedRead(lambda n: Chat.objects.order_by("title")[:n], kinds=(int,))  # LIMIT is written into the SQL
    assert "depends on its arguments" in by_limit.prepare()
    assert [c.pk for c in by_limit.run(1)] == [min((chat, other), key=lambda c: c.title).pk]
    assert len(by_limit.run(2)) == 2
    by_prefix = PreparedRead(lambda chat_id: Chat.objects.filter(title__startswith=str(chat_id)), kinds=(uuid.UUID,))
    assert "no argument it can place" in by_prefix.prepare()
    Chat.objects.filter(pk=other.pk).update(title=f"{other.pk} and more")
    assert [c.pk for c in by_prefix.run(other.pk)] == [other.pk]


@pytest.mark.django_db(transaction=True)
def test_compiled_once_and_run_on_each_threads_own_connection(user, chat):
    compiled = []
    read = PreparedRead(lambda chat_id: compiled.append(1) or Chat.objects.filter(pk=chat_id), kinds=(uuid.UUID,))
    found = {}

    def in_a_thread(n):
        try:
            found[n] = [c.pk for c in read.run(chat.pk)]
        finally:
            connection.close()  # this thread's own

    threads = [threading.Thread(target=in_a_thread, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == {n: [chat.pk] for n in range(4)}
    assert len(compiled) == 3  # three stand-in builds, once for the process
    assert [c.pk for c in read.run(chat.pk)] == [chat.pk] and len(compiled) == 3


@pytest.mark.django_db(transaction=True)
def test_a_read_that_cannot_be_compiled_at_boot_leaves_the_others_compiled_and_is_tried_again(chat, monkeypatch):
    from mothership.infra import prepared

    away = {"now": True}

    def build(chat_id):
        if away["now"]:
            raise prepared.connections["default"].Database.OperationalError("the database is away")
        return Chat.objects.filter(pk=chat_id)

    failing = PreparedRead(build, kinds=(uuid.UUID,))
    fine = PreparedRead(lambda chat_id: Chat.objects.filter(pk=chat_id), kinds=(uuid.UUID,))
    monkeypatch.setattr(prepared, "_ALL", [failing, fine])
    booting = threading.Thread(target=prepared.prepare_all)  # as a process's warm-up: a thread of its own
    booting.start()
    booting.join()
    assert failing._plan is None and fine._plan not in (None, False)
    away["now"] = False
    assert [c.pk for c in failing.run(chat.pk)] == [chat.pk] and failing._plan not in (None, False)


def test_the_senders_cap_is_read_prepared_and_locks_the_senders_row_on_postgresql(user, chat):
    from django.db import transaction

    from streams.services.start import _LIVE_TURNS, _SENDER_LOCK

    assert _SENDER_LOCK.prepare() is None and _LIVE_TURNS.prepare() is None
    assert _SENDER_LOCK._plan.sql.endswith(" FOR UPDATE") == (connection.vendor == "postgresql")
    assert "FOR UPDATE" not in _LIVE_TURNS._plan.sql
    live = start.stream_start(chat=chat, user=user, content="one")
    with transaction.atomic():
        assert _SENDER_LOCK.run(user.pk) == [user.pk]
        assert _LIVE_TURNS.run(user.pk) == [live.stream.pk]
    assert _LIVE_TURNS.run(user.pk + 1) == []


def test_a_turns_conversation_is_read_prepared_in_one_statement_files_marked(user, chat):
    assert chat_selectors._CONVERSATION.prepare() is None
    first = start.stream_start(chat=chat, user=user, content="a question")
    Message = first.user_message.__class__
    Message.objects.filter(pk=first.assistant_message.pk).update(content="an answer", status="complete")
    upload = SimpleUploadedFile("notes.txt", b"a note", content_type="text/plain")
    first.user_message.attachments.add(attachment_upload(chat=chat, user=user, file=upload))
    with CaptureQueriesContext(connection) as queries:
        prepared = chat_selectors._CONVERSATION.run(chat.pk)
    assert len(queries) == 1
    assert prepared == [tuple(row) for row in chat_selectors._conversation_rows(chat.pk)]
    assert [(role, content, files) for _pk, _parent, role, content, files in prepared] == [
        ("user", "a question", True),
        ("assistant", "an answer", False),
    ]
    assert chat_selectors._CONVERSATION.run(uuid.uuid4()) == []


def test_the_starts_chat_update_and_the_claim_come_out_as_djangos_own_in_every_shape(chat):
    from django.utils import timezone

    from mothership.infra import statements

    now, ids = timezone.now(), [uuid.uuid4() for _ in range(3)]
    for (leaf, titled), shape in start._CHAT_UPDATES.items():
        assert shape.prepare() is None, shape.refused
        stored, title = (ids[2] if leaf else None), ("A title" if titled else None)
        prepared = start._chat_update(chat.pk, ids[0], now, ids[1], stored, title)
        assert prepared == start._chat_update_built(chat.pk, ids[0], now, ids[1], stored, title)
    assert run._CLAIMED.prepare() is None
    assert run._CLAIMED.statement(ids[0], now) == run._claimed(ids[0], now)
    Chat.objects.filter(pk=chat.pk).update(title="", title_set=False, leaf_id=None)
    assert statements.execute(start._chat_update(chat.pk, ids[0], now, ids[1], ids[2], "Named")) == 0  # another leaf
    assert statements.execute(start._chat_update(chat.pk, ids[0], now, ids[1], None, "Named")) == 1
    chat.refresh_from_db()
    assert (chat.title, chat.title_set, chat.updated_at, chat.active_stream_id, chat.leaf_id) == ("Named", True, now, *ids[:2])


def test_a_statement_whose_parameters_it_cannot_place_is_compiled_at_each_call(chat):
    from mothership.infra import statements
    from mothership.infra.prepared import PreparedStatement

    def build(pk):
        return statements.update(Chat.objects.filter(pk=pk), title=pk.hex[:16])  # from the argument, but not it

    shape = PreparedStatement(build, kinds=(uuid.UUID,))
    assert shape.prepare() is not None and "no argument it can place" in shape.refused
    other = uuid.uuid4()
    assert shape.statement(other) == build(other)
