"""Cancel and close in-process against real Redis: validation, truthful reasons, the settle bound."""

from __future__ import annotations

import datetime
import threading
import time
import uuid

import pytest
from django.db import connection

from chats.models import Chat, Message
from streams import abort, eventlog, events, locks
from streams.models import Stream
from streams.services import CancelOutcome, stream_cancel, stream_finalize, stream_run, stream_start

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


def _late_delta(stream, seq: int) -> None:
    eventlog.append(
        chat_id=stream.chat_id,
        stream_id=stream.id,
        event=events.stream_event(type=events.DELTA, chat_id=stream.chat_id, stream_id=stream.id, seq=seq, text=" late"),
    )


def test_a_worker_that_does_not_settle_is_fenced_and_force_finalized_from_the_log(api, chat, settings, monkeypatch, caplog):
    from streams.services import cancel

    settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT = 0.3
    stream, text = _hung_worker_turn(chat)
    usage = {"input_tokens": 7, "output_tokens": 3, "cache_read_tokens": 0, "cache_write_tokens": 0}
    eventlog.append(
        chat_id=chat.id,
        stream_id=stream.id,
        event=events.stream_event(type=events.USAGE, chat_id=chat.id, stream_id=stream.id, seq=4, usage=usage),
    )
    late_write = []
    real_salvage = cancel.salvage

    def salvage_while_the_worker_writes(stream, **kwargs):
        try:  # the hung worker wakes up just as the log is read: it must already be fenced
            _late_delta(stream, 5)
            late_write.append("accepted")
        except eventlog.Fenced:
            late_write.append("fenced")
        return real_salvage(stream, **kwargs)

    monkeypatch.setattr(cancel, "salvage", salvage_while_the_worker_writes)

    answer = _cancel(api, chat, {"stream_id": str(stream.id)}).json()

    assert answer == {"ok": True, "cancelled": True, "stream_id": str(stream.id), "reason": None, "settled": False}
    assert late_write == ["fenced"]
    log = eventlog.read(stream.id)
    assert [e["seq"] for e in log] == [1, 2, 3, 4, 5] and log[-1]["type"] == "stream.cancelled"
    message = Message.objects.get(pk=stream.assistant_message_id)
    assert (message.status, message.content) == ("cancelled", text)  # nothing the model produced is lost
    assert (message.input_tokens, message.output_tokens) == (7, 3)  # nor what it was billed
    assert Chat.objects.get(pk=chat.pk).active_stream_id is None and locks.lock_owner(chat_id=chat.id) is None
    with pytest.raises(eventlog.Fenced):  # the hung worker can write nothing more
        _late_delta(stream, 6)
    assert f"stream {stream.id} did not settle within 0.3s of a stop; force-finalizing" in [
        r.getMessage() for r in caplog.records
    ]


def test_a_force_finalize_that_loses_to_another_stop_answers_cancelled_and_unsettled(chat, settings, monkeypatch):
    from streams.services import cancel

    settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT = 0.1
    stream, text = _hung_worker_turn(chat)
    real_salvage = cancel.salvage

    def salvage_after_a_close_sealed_it(stream, **kwargs):
        # A Close of the same chat force-finalized the stream first.
        assert stream_finalize(stream=stream, status="cancelled", reason="closed", text=text, last_seq=3)
        return real_salvage(stream, **kwargs)

    monkeypatch.setattr(cancel, "salvage", salvage_after_a_close_sealed_it)

    answer = stream_cancel(chat=chat, stream_id=stream.id)

    # (no worker settled it: the other stop force-finalized it too)
    assert answer == CancelOutcome(cancelled=True, stream_id=str(stream.id), reason=None, settled=False)
    stream.refresh_from_db()
    assert (stream.status, stream.reason) == ("cancelled", "closed")
    assert _one_terminal(stream.id) == "stream.cancelled"


def test_a_stream_whose_lock_is_gone_is_finalized_at_once(api, chat, settings):
    settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT = 30  # must not be waited for: nobody holds the lock
    stream, text = _hung_worker_turn(chat)
    locks.lock_release(chat_id=chat.id, stream_id=stream.id)
    started = time.monotonic()

    answer = _cancel(api, chat, {"stream_id": str(stream.id)}).json()

    assert time.monotonic() - started < 10  # far less than the settle bound it would otherwise wait out
    assert (answer["cancelled"], answer["settled"]) == (True, False)
    assert Message.objects.get(pk=stream.assistant_message_id).content == text


class _RaceHooks:
    """Holds the worker and the canceller at chosen points, so each ordering of the race is forced."""

    def __init__(self, monkeypatch):
        from streams.services import cancel, run
        from streams.services.turn import Turn

        self.generated = threading.Event()  # the model has finished; the worker is about to seal
        self.cancel_waiting = threading.Event()  # the canceller is waiting for the worker to settle
        self.fenced = threading.Event()  # the canceller has fenced the worker, before it force-finalizes
        self.release_seal = threading.Event()
        self.seal_after_fence = False
        self.release_generate = threading.Event()
        self.sealed = threading.Event()
        self.generating = threading.Event()  # the worker claimed the turn; its model is about to start
        self.abort_heard = threading.Event()  # the worker's abort listener heard the stop
        real_finalize, real_wait, real_salvage = run.stream_finalize_despite_outage, cancel._wait_for_worker, cancel.salvage
        real_generate, real_on_abort = Turn.generate, Turn.on_abort

        def finalize(**kwargs):
            self.generated.set()
            assert self.release_seal.wait(10)
            try:
                return real_finalize(**kwargs)
            finally:
                self.sealed.set()

        def wait_for_worker(stream):
            self.cancel_waiting.set()
            return real_wait(stream)

        def salvage(stream, **kwargs):
            self.fenced.set()
            if self.seal_after_fence:
                assert self.sealed.wait(10)
            return real_salvage(stream, **kwargs)

        def generate(run_self):
            self.generating.set()
            assert self.release_generate.wait(10)
            return real_generate(run_self)

        def on_abort(run_self, request):
            try:
                return real_on_abort(run_self, request)
            finally:
                self.abort_heard.set()

        monkeypatch.setattr(run, "stream_finalize_despite_outage", finalize)
        monkeypatch.setattr(cancel, "_wait_for_worker", wait_for_worker)
        monkeypatch.setattr(cancel, "salvage", salvage)
        monkeypatch.setattr(Turn, "generate", generate)
        monkeypatch.setattr(Turn, "on_abort", on_abort)


def _race(chat, settings, monkeypatch, *, held_at: str):
    """A turn whose worker runs in a thread and is held at ``held_at`` ("seal" or "generate")."""
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 20
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0
    hooks = _RaceHooks(monkeypatch)
    (hooks.release_generate if held_at == "seal" else hooks.release_seal).set()
    turn = stream_start(chat=chat, content="hi")
    outcome: dict = {}

    def work():
        try:
            outcome["run"] = stream_run(stream_id=turn.stream.id)
        finally:
            connection.close()  # the thread's own connection, or the test DB cannot be dropped

    worker = threading.Thread(target=work)
    worker.start()
    return hooks, turn, worker, outcome


def _one_terminal(stream_id) -> str:
    terminals = [e["type"] for e in eventlog.read(stream_id) if e["type"] in events.TERMINAL_TYPES]
    assert len(terminals) == 1, terminals
    return terminals[0]


def _nothing_left_behind(chat) -> None:
    assert locks.lock_owner(chat_id=chat.id) is None and Chat.objects.get(pk=chat.pk).active_stream_id is None


@pytest.mark.parametrize("ordering", ["worker seals while the stop waits", "worker seals between fence and force-finalize"])
def test_a_stop_racing_the_worker_finishing_loses_truthfully(chat, settings, monkeypatch, ordering):
    hooks, turn, worker, outcome = _race(chat, settings, monkeypatch, held_at="seal")
    # Given a worker whose model has finished and which is about to seal the turn as completed
    assert hooks.generated.wait(10)
    if ordering == "worker seals while the stop waits":
        # (the worker seals as soon as the stop is waiting for it)
        threading.Thread(target=lambda: hooks.cancel_waiting.wait(10) and hooks.release_seal.set()).start()
    else:
        # (the stop's settle bound runs out; the worker seals after the fence, before the force-finalize)
        settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT = 0.2
        hooks.seal_after_fence = True
        threading.Thread(target=lambda: hooks.fenced.wait(10) and hooks.release_seal.set()).start()

    # When the stop lands in the middle of the seal
    answer = stream_cancel(chat=chat, stream_id=turn.stream.id)
    worker.join(10)

    # Then the worker's seal wins, and the stop says so
    assert hooks.cancel_waiting.is_set()
    assert outcome["run"] == "completed"
    stream = Stream.objects.get(pk=turn.stream.pk)
    assert stream.started_at <= stream.first_delta_at <= stream.finished_at and stream.cancel_noticed_at is None
    assert answer == CancelOutcome(cancelled=False, stream_id=str(turn.stream.id), reason="already_finished", settled=True)
    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert message.status == "complete" and len(message.content.split()) == 20
    assert _one_terminal(turn.stream.id) == "stream.completed"
    _nothing_left_behind(chat)


def test_a_stop_that_lands_before_the_worker_finishes_is_settled_by_the_worker(chat, settings, monkeypatch):
    hooks, turn, worker, outcome = _race(chat, settings, monkeypatch, held_at="generate")
    # Given a worker that claimed the turn and holds its lock, its model about to start
    assert hooks.generating.wait(10)
    # (it goes on once the stop is waiting for it and its abort listener has heard the stop)
    threading.Thread(
        target=lambda: hooks.cancel_waiting.wait(10) and hooks.abort_heard.wait(10) and hooks.release_generate.set()
    ).start()

    # When the stop lands
    answer = stream_cancel(chat=chat, stream_id=turn.stream.id)
    worker.join(10)

    # Then the worker settles it as cancelled, and the stop says so
    assert outcome["run"] == "cancelled"
    assert answer == CancelOutcome(cancelled=True, stream_id=str(turn.stream.id), reason=None, settled=True)
    stream = Stream.objects.get(pk=turn.stream.pk)
    assert stream.cancel_requested_at <= stream.cancel_noticed_at <= stream.finished_at  # the stop's latency is on record
    assert Message.objects.get(pk=turn.assistant_message.pk).status == "cancelled"
    assert _one_terminal(turn.stream.id) == "stream.cancelled"
    _nothing_left_behind(chat)


def test_a_stop_for_a_finished_turn_while_a_newer_one_runs_is_a_stream_mismatch(chat, settings):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    first = stream_start(chat=chat, content="first")
    assert stream_run(stream_id=first.stream.id) == "completed"
    second = stream_start(chat=chat, content="second")

    answer = stream_cancel(chat=chat, stream_id=first.stream.id)

    assert answer == CancelOutcome(cancelled=False, stream_id=str(first.stream.id), reason="stream_mismatch", settled=True)
    assert Stream.objects.get(pk=second.stream.pk).status == "queued"
    assert locks.lock_owner(chat_id=chat.id) == str(second.stream.id)
    assert stream_cancel(chat=chat, stream_id=first.stream.id).reason == "stream_mismatch"
    stream_cancel(chat=chat, stream_id=second.stream.id)
    assert stream_cancel(chat=chat, stream_id=first.stream.id).reason == "already_finished"  # nothing runs now
    # Sealed a moment ago, its own lock not yet released: still already_finished, not a mismatch.
    assert locks.lock_acquire(chat_id=chat.id, stream_id=second.stream.id)
    assert stream_cancel(chat=chat, stream_id=second.stream.id).reason == "already_finished"


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


def test_stopping_a_chat_stops_its_live_turn_only_with_the_reason_given(chat, workspace):
    from chats.services import chat_create
    from streams.services import streams_cancel_chat

    other = chat_create(workspace=workspace, title="other")
    elsewhere = stream_start(chat=other, content="keeps going")
    assert streams_cancel_chat(chat=chat, reason="closed") is None  # nothing live here
    turn = stream_start(chat=chat, content="to be closed")

    outcome = streams_cancel_chat(chat=chat, reason="closed")

    assert outcome == CancelOutcome(cancelled=True, stream_id=str(turn.stream.id), reason=None, settled=True)
    assert Stream.objects.filter(pk=turn.stream.pk).values_list("status", "reason").get() == ("cancelled", "closed")
    assert Stream.objects.filter(pk=elsewhere.stream.pk).values_list("status", "cancel_requested_at").get() == ("queued", None)
    assert locks.lock_owner(chat_id=other.id) == str(elsewhere.stream.id)
