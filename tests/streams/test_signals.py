"""A turn tells the apps above it what happened, after commit, and a failing listener harms nothing."""

from __future__ import annotations

import pytest

from streams import locks
from streams.services import stream_cancel, stream_start
from streams.signals import turn_sealed, turn_started

pytestmark = pytest.mark.django_db


@pytest.fixture
def heard():
    events = []

    def on_started(sender, *, chat_id, stream_id, **kwargs):
        events.append(("started", stream_id))

    def on_sealed(sender, *, chat_id, stream_id, status, sealed_at, **kwargs):
        events.append(("sealed", stream_id, status))

    def broken(sender, **kwargs):
        raise RuntimeError("a listener that fails")

    turn_started.connect(on_started)
    turn_sealed.connect(broken)  # before the good one: it must not stop the others
    turn_sealed.connect(on_sealed)
    yield events
    turn_started.disconnect(on_started)
    turn_sealed.disconnect(broken)
    turn_sealed.disconnect(on_sealed)


def test_start_and_seal_are_announced_after_commit_only(chat, heard, turns_not_enqueued, django_capture_on_commit_callbacks):
    # When a turn starts
    with django_capture_on_commit_callbacks(execute=True):
        turn = stream_start(chat=chat, content="hello")
        # Then neither the worker nor the listeners hear of it before the commit
        assert heard == [] and turns_not_enqueued == []
    assert heard == [("started", turn.stream.id)] and turns_not_enqueued == [str(turn.stream.id)]

    # When it is stopped while still queued (the cancel seals it)
    with django_capture_on_commit_callbacks(execute=True):
        assert stream_cancel(chat=chat, stream_id=turn.stream.id).cancelled
        # Then the lock is held until the seal is committed and announced
        assert locks.lock_owner(chat_id=chat.pk) == str(turn.stream.id)
        assert heard == [("started", turn.stream.id)]
    # And after it: sealed once, the lock freed, despite a listener that raised
    assert heard[1:] == [("sealed", turn.stream.id, "cancelled")]
    assert locks.lock_owner(chat_id=chat.pk) is None


def test_the_seal_clears_its_own_marker_in_its_transaction_before_anything_is_announced(
    chat, turns_not_enqueued, django_capture_on_commit_callbacks
):
    from chats.models import Chat
    from streams.services import stream_finalize

    with django_capture_on_commit_callbacks(execute=True):
        turn = stream_start(chat=chat, content="hello")

    with django_capture_on_commit_callbacks(execute=False) as announcements:
        assert stream_finalize(stream=turn.stream, status="completed", reason="", text="done", last_seq=0)

    # The list is true from the commit on, whatever the announcement (tiles, lock release) does later.
    assert Chat.objects.get(pk=chat.pk).active_stream_id is None
    seal_announcements = [c for c in announcements if "stream_finalize" in c.__qualname__.split(".<locals>")[0]]
    assert locks.lock_owner(chat_id=chat.pk) == str(turn.stream.id) and len(seal_announcements) == 1
