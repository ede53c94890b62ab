"""Cancel and close in-process against real Redis: validation, truthful reasons, the settle bound."""

from __future__ import annotations

import datetime
import threading
import uuid

import pytest
from django.db import connection

from chats.models import Chat, Message
from streams import abort, eventlog, events, locks
from streams.models import Stream
from streams.services import stream_cancel, stream_run, stream_start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_worker(turns_not_enqueued):
    return turns_not_enqueued


def _cancel(api, chat, body):
    return api.post(f"/api/mothership/chats/{chat.id}/cancel", body, format="json")


@pytest.mark.parametrize(
    "body",
    [{}, {"stream_id": "nope"}, {"stream_id": 42}, {"stream_id": None}, {"stream_id": ["x"]}, ["not", "an", "object"]],
)
def test_a_malformed_stream_id_is_a_400_with_a_message(api, chat, body):
    response = _cancel(api, chat, body)
    assert response.status_code == 400
    assert response.json()["detail"]


def test_non_members_get_404_for_cancel_and_close(make_user, chat):
    from rest_framework.test import APIClient

    stranger = APIClient()
    stranger.force_authenticate(make_user("stranger"))
    assert (
        stranger.post(f"/api/mothership/chats/{chat.id}/cancel", {"stream_id": str(uuid.uuid4())}, format="json").status_code
        == 404
    )
    assert stranger.post(f"/api/mothership/chats/{chat.id}/close", {}, format="json").status_code == 404
    assert stranger.post("/api/mothership/chats/not-a-uuid/close", {}, format="json").status_code == 404
    chat.refresh_from_db()
    assert chat.closed_at is None


def test_nothing_running_answers_not_active(api, chat):
    stream_id = str(uuid.uuid4())
    assert _cancel(api, chat, {"stream_id": stream_id}).json() == {
        "ok": True,
        "cancelled": False,
        "stream_id": stream_id,
        "reason": "not_active",
        "settled": True,
    }


def test_a_stream_of_another_chat_is_never_stopped(api, chat, workspace):
    from chats.services import chat_create

    other = chat_create(workspace=workspace, title="other")
    turn = stream_start(chat=other, content="hi")
    assert _cancel(api, chat, {"stream_id": str(turn.stream.id)}).json()["reason"] == "not_active"
    turn.stream.refresh_from_db()
    assert turn.stream.status == "queued" and locks.lock_owner(chat_id=other.id) == str(turn.stream.id)


def test_a_stop_that_lands_between_claim_and_first_token_still_wins_with_no_delta(chat, settings):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    turn = stream_start(chat=chat, content="hi")
    abort.abort_request(stream_id=turn.stream.id)  # the key is there before the worker claims the stream

    assert stream_run(stream_id=turn.stream.id) == "cancelled"

    assert [e["type"] for e in eventlog.read(turn.stream.id)] == ["stream.cancelled"]
    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert (message.status, message.content) == ("cancelled", "")
    assert Chat.objects.get(pk=chat.pk).active_stream_id is None and locks.lock_owner(chat_id=chat.id) is None


def _hung_worker_turn(chat) -> tuple[Stream, str]:
    """A streaming turn whose 'worker' holds the lock and wrote 3 deltas but never listens for stops."""
    turn = stream_start(chat=chat, content="hi")
    Stream.objects.filter(pk=turn.stream.pk).update(status="streaming")
    texts = ["alpha", " beta", " gamma"]
    for seq, text in enumerate(texts, start=1):
        eventlog.append(
            chat_id=chat.id,
            stream_id=turn.stream.id,
            event=events.stream_event(type=events.DELTA, chat_id=chat.id, stream_id=turn.stream.id, seq=seq, text=text),
        )
    return Stream.objects.get(pk=turn.stream.pk), "".join(texts)


def test_a_worker_that_does_not_settle_is_fenced_and_force_finalized_from_the_log(api, chat, settings):
    settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT = 0.3
    stream, text = _hung_worker_turn(chat)

    answer = _cancel(api, chat, {"stream_id": str(stream.id)}).json()

    assert answer == {"ok": True, "cancelled": True, "stream_id": str(stream.id), "reason": None, "settled": False}
    log = eventlog.read(stream.id)
    assert [e["seq"] for e in log] == [1, 2, 3, 4] and log[-1]["type"] == "stream.cancelled"
    message = Message.objects.get(pk=stream.assistant_message_id)
    assert (message.status, message.content) == ("cancelled", text)  # nothing the model produced is lost
    assert Chat.objects.get(pk=chat.pk).active_stream_id is None and locks.lock_owner(chat_id=chat.id) is None
    with pytest.raises(eventlog.Fenced):  # the hung worker can write nothing more
        eventlog.append(
            chat_id=chat.id,
            stream_id=stream.id,
            event=events.stream_event(type=events.DELTA, chat_id=chat.id, stream_id=stream.id, seq=5, text="late"),
        )


def test_a_stream_whose_lock_is_gone_is_finalized_at_once(api, chat, settings):
    settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT = 30  # must not be waited for: nobody holds the lock
    stream, text = _hung_worker_turn(chat)
    locks.lock_release(chat_id=chat.id, stream_id=stream.id)

    answer = _cancel(api, chat, {"stream_id": str(stream.id)}).json()

    assert (answer["cancelled"], answer["settled"]) == (True, False)
    assert Message.objects.get(pk=stream.assistant_message_id).content == text


def test_a_cancel_racing_the_worker_finishing_gives_one_finalizer_and_a_truthful_answer(chat, settings):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 2000
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 40
    for _ in range(10):
        turn = stream_start(chat=chat, content="hi")
        outcome = {}

        def work():
            try:
                outcome["run"] = stream_run(stream_id=turn.stream.id)
            finally:
                connection.close()  # the thread's own connection, or the test DB cannot be dropped

        worker = threading.Thread(target=work)
        worker.start()
        answer = stream_cancel(chat=chat, stream_id=turn.stream.id)
        worker.join(10)
        stream = Stream.objects.get(pk=turn.stream.pk)
        assert answer.cancelled == (stream.status == "cancelled")
        if not answer.cancelled:
            assert stream.status == "completed" and answer.reason == "already_finished"
        terminals = [e for e in eventlog.read(stream.id) if e["type"] in events.TERMINAL_TYPES]
        assert len(terminals) == 1
        assert locks.lock_owner(chat_id=chat.id) is None and Chat.objects.get(pk=chat.pk).active_stream_id is None


def test_the_sweeper_leaves_a_stream_whose_stop_is_being_settled_to_the_canceller(chat):
    from django.utils import timezone

    from streams.services import streams_sweep

    stream, _ = _hung_worker_turn(chat)
    Stream.objects.filter(pk=stream.pk).update(cancel_requested_at=timezone.now())
    locks.lock_release(chat_id=chat.id, stream_id=stream.id)  # the canceller fenced the worker

    assert str(stream.pk) not in streams_sweep()["interrupted"]
    assert Stream.objects.get(pk=stream.pk).status == "streaming"
    Stream.objects.filter(pk=stream.pk).update(cancel_requested_at=timezone.now() - datetime.timedelta(minutes=5))
    assert streams_sweep()["interrupted"] == [str(stream.pk)]  # an abandoned stop is swept after all


def test_an_unknown_stream_id_is_not_active_even_while_another_turn_runs(api, chat):
    turn = stream_start(chat=chat, content="hi")
    stream_id = str(uuid.uuid4())
    assert _cancel(api, chat, {"stream_id": stream_id}).json()["reason"] == "not_active"
    turn.stream.refresh_from_db()
    assert turn.stream.status == "queued"
