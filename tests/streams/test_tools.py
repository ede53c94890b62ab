"""Tool calls in a turn, against the demo MCP server as a real child process: each call and its
result are events in the log, the reply and its record are saved, Stop during a call cancels it
on the server, and a turn whose worker died mid-call is sealed with the call ``interrupted``."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from chats.models import Message
from streams import eventlog, events, locks
from streams.models import Stream
from streams.providers import ToolCall, Usage
from streams.services import stream_cancel, stream_run, stream_start, streams_sweep
from tests import factories
from tests.support.event_schemas import schema_errors
from tests.support.tools import demo_records, demo_servers
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_log(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "demo-tools.jsonl"


@pytest.fixture(autouse=True)
def demo_server(settings, turns_not_enqueued, demo_log):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0
    settings.MCP_SERVERS = demo_servers(demo_log)


@pytest.fixture
def tool_chat(chat):
    chat.tools = ["demo.*"]
    chat.save(update_fields=["tools"])
    return chat


def _run_in_thread(turn) -> tuple[threading.Thread, dict]:
    """The worker's side of ``turn`` in a thread of its own (which gives back its database connection)."""
    outcome: dict = {}

    def work():
        try:
            outcome["run"] = stream_run(stream_id=turn.stream.id)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    return worker, outcome


def test_a_tool_call_and_its_result_are_events_and_the_reply_is_the_result(tool_chat):
    turn = stream_start(chat=tool_chat, content='/tool demo.roll {"sides": 6, "count": 3}')

    assert stream_run(stream_id=turn.stream.id) == "completed"

    log = eventlog.read(turn.stream.id)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    for event in log:
        assert schema_errors(event) == [], event
    types = [e["type"] for e in log]
    assert types[:3] == [events.STARTED, events.TOOL_CALL, events.TOOL_RESULT] and types[-2:] == [events.USAGE, events.COMPLETED]
    call, result = log[1], log[2]
    assert (call["tool"], call["arguments"]) == ("demo.roll", {"sides": 6, "count": 3})
    assert (result["callId"], result["status"]) == (call["callId"], "ok") and result["durationMs"] >= 0
    faces, total = result["content"].split(" = ")
    assert sum(map(int, faces.split(" + "))) == int(total)
    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert (message.status, message.content) == ("complete", result["content"])  # the tool's text, verbatim
    assert message.tool_calls == [
        {
            **{k: call[k] for k in ("callId", "tool", "arguments")},
            "status": "ok",
            "content": result["content"],
            "durationMs": result["durationMs"],
        }
    ]
    assert message.output_tokens > 0 and message.input_tokens + message.cache_read_tokens > 0  # both rounds counted


@pytest.mark.parametrize(
    "tools, content, expected",
    [
        ([], "/tool demo.clock {}", "The tool demo.clock is not enabled in this conversation."),
        (["demo.roll"], "/tool demo.clock {}", "The tool demo.clock is not enabled in this conversation."),
        (["demo.*"], "/tool demo.roll {sides: 6}", "The arguments of /tool demo.roll are not JSON"),
        (["demo.*"], '/tool demo.roll {"sides": 1}', "sides must be 2 to 1000"),
    ],
    ids=["no-tools", "another-tool", "bad-json", "tool-error"],  # (mutmut passes test ids on a command line)
)
def test_a_call_that_cannot_be_made_says_why_in_the_reply(chat, tools, content, expected):
    chat.tools = tools
    chat.save(update_fields=["tools"])
    turn = stream_start(chat=chat, content=content)
    assert stream_run(stream_id=turn.stream.id) == "completed"
    assert expected in Message.objects.get(pk=turn.assistant_message.pk).content


def test_stop_during_a_tool_call_cancels_it_on_the_server_and_the_turn(tool_chat, demo_log):
    turn = stream_start(chat=tool_chat, content='/tool demo.sleep {"seconds": 30, "label": "stop-me"}')
    worker, outcome = _run_in_thread(turn)
    wait_for(lambda: any(r.get("label") == "stop-me" for r in demo_records(demo_log)), 20, "the server to start the call")

    answer = stream_cancel(chat=tool_chat, stream_id=turn.stream.id)
    worker.join(10)

    assert (answer.cancelled, answer.settled, outcome["run"]) == (True, True, "cancelled")
    wait_for(
        lambda: any(r.get("label") == "stop-me" and r["event"] == "cancelled" for r in demo_records(demo_log)),
        5,
        "the server's record of the cancellation",
    )
    log = eventlog.read(turn.stream.id)
    result = next(e for e in log if e["type"] == events.TOOL_RESULT)
    assert (result["status"], log[-1]["type"]) == ("cancelled", events.CANCELLED)
    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert message.status == "cancelled" and [c["status"] for c in message.tool_calls] == ["cancelled"]
    assert locks.lock_owner(chat_id=tool_chat.id) is None


def test_a_turn_whose_worker_died_mid_call_is_sealed_with_the_call_interrupted(tool_chat):
    turn = stream_start(chat=tool_chat, content="/tool demo.sleep {}")
    Stream.objects.filter(pk=turn.stream.pk).update(status="streaming")
    for seq, (type_, fields) in enumerate(
        [
            (events.STARTED, {}),
            (events.DELTA, {"text": "Let me wait. "}),
            (events.TOOL_CALL, {"callId": "call_1", "tool": "demo.sleep", "arguments": {}}),
        ],
        start=1,
    ):
        event = events.stream_event(type=type_, chat_id=tool_chat.id, stream_id=turn.stream.id, seq=seq, **fields)
        eventlog.append(chat_id=tool_chat.id, stream_id=turn.stream.id, event=event)
    locks.lock_release(chat_id=tool_chat.id, stream_id=turn.stream.id)  # the worker is gone

    assert streams_sweep()["interrupted"] == [str(turn.stream.id)]

    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert (message.status, message.content) == ("interrupted", "Let me wait. ")
    assert [(c["callId"], c["tool"], c["status"]) for c in message.tool_calls] == [("call_1", "demo.sleep", "interrupted")]


def test_a_model_that_keeps_calling_tools_is_stopped_at_the_round_limit(tool_chat, settings, monkeypatch):
    settings.MOTHERSHIP_MAX_TOOL_ROUNDS = 2

    class Insistent:
        name, model, model_id, delta_is_token = "local", "insistent", "insistent", True

        def stream(self, *, messages, stop, cache_key=None, prefix="", tools=()):
            yield ToolCall(call_id=f"call_{len(messages)}", name="demo.clock", arguments={})
            yield Usage(input_tokens=10, output_tokens=1)

    monkeypatch.setattr("streams.services.turn.turn.get_provider", lambda model_id=None: Insistent())
    turn = stream_start(chat=tool_chat, content="what time is it, again and again?")

    assert stream_run(stream_id=turn.stream.id) == "completed"

    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert [c["status"] for c in message.tool_calls] == ["ok", "ok", "error"]
    assert "limit of 2 rounds" in message.tool_calls[-1]["content"]
    assert (message.input_tokens, message.output_tokens) == (30, 3)  # every round's usage adds up


def test_a_chats_tools_are_set_by_its_manager_and_checked(api, chat, make_user, workspace):
    url = f"/api/mothership/chats/{chat.id}"
    answer = api.patch(url, {"tools": ["demo.roll", "demo.*", "demo.roll"]}, format="json")
    assert answer.status_code == 200 and answer.json()["tools"] == ["demo.roll", "demo.*"]
    assert api.get(url).json()["tools"] == ["demo.roll", "demo.*"]
    for wrong, says in ((["roll"], "is not a tool name"), (["web.fetch"], "No tool server is named 'web'"), ("demo.*", "list")):
        refused = api.patch(url, {"tools": wrong}, format="json")
        assert refused.status_code == 400 and says in json.dumps(refused.json()), refused.json()
    member = factories.MembershipFactory(workspace=workspace, role="member").user
    other = APIClient()
    other.force_authenticate(member)
    assert other.patch(url, {"tools": []}, format="json").status_code == 403
    stranger = APIClient()
    stranger.force_authenticate(make_user())
    assert stranger.patch(url, {"tools": []}, format="json").status_code == 404
    assert api.patch(url, {"tools": []}, format="json").json()["tools"] == []


@pytest.fixture
def approving(settings, demo_log, tool_chat):
    """The demo server configured with ``"approve": true``: every call waits for a person."""
    settings.MCP_SERVERS = demo_servers(demo_log, approve=True)
    return tool_chat


def _waiting_call(turn) -> dict:
    return wait_for(
        lambda: next((e for e in eventlog.read(turn.stream.id) if e["type"] == events.TOOL_APPROVAL), None),
        20,
        "the call to wait for a person",
    )


def test_a_call_that_needs_approval_waits_says_so_everywhere_and_runs_once_approved(approving, api, demo_log, make_user):
    turn = stream_start(chat=approving, content='/tool demo.sleep {"seconds": 0, "label": "approved"}')
    worker, outcome = _run_in_thread(turn)
    asked = _waiting_call(turn)
    assert (asked["tool"], asked["arguments"]) == ("demo.sleep", {"seconds": 0, "label": "approved"})
    assert schema_errors(asked) == []

    # While it waits: the chat says "waiting" and names the call; the server has not been called.
    chat_json = api.get(f"/api/mothership/chats/{approving.id}").json()
    assert (chat_json["state"], chat_json["waiting_call"]) == ("waiting", asked["callId"])
    assert api.get("/api/mothership/chats").json()[0]["state"] == "waiting"
    assert not [r for r in demo_records(demo_log) if r["label"] == "approved"]
    url = f"/api/mothership/chats/{approving.id}/tool-calls/{asked['callId']}/approval"
    assert api.post(url, {"approve": "yes"}, format="json").status_code == 400
    stranger = APIClient()
    stranger.force_authenticate(make_user())
    assert stranger.post(url, {"approve": True}, format="json").status_code == 404

    answer = api.post(url, {"approve": True}, format="json")
    worker.join(20)

    assert answer.json() == {"ok": True, "callId": asked["callId"], "approved": True}
    assert outcome["run"] == "completed"
    result = next(e for e in eventlog.read(turn.stream.id) if e["type"] == events.TOOL_RESULT)
    assert (result["status"], result["content"]) == ("ok", "Slept 0 s.")
    assert [r["event"] for r in demo_records(demo_log) if r["label"] == "approved"] == ["started", "finished"]
    assert api.get(f"/api/mothership/chats/{approving.id}").json()["state"] == "idle"
    again = api.post(url, {"approve": False}, format="json")
    assert again.status_code == 404  # its turn is over: nothing waits any more


def test_a_denied_call_is_never_made_and_the_model_is_told(approving, api, demo_log):
    turn = stream_start(chat=approving, content='/tool demo.sleep {"seconds": 0, "label": "denied"}')
    worker, outcome = _run_in_thread(turn)
    asked = _waiting_call(turn)
    url = f"/api/mothership/chats/{approving.id}/tool-calls/{asked['callId']}/approval"

    assert api.post(url, {"approve": False}, format="json").json()["approved"] is False
    worker.join(20)

    assert outcome["run"] == "completed"
    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert [c["status"] for c in message.tool_calls] == ["denied"]
    assert message.content == message.tool_calls[0]["content"] and "denied" in message.content
    assert not [r for r in demo_records(demo_log) if r["label"] == "denied"]


def test_a_second_answer_is_refused_and_stop_ends_a_waiting_call(approving, api):
    turn = stream_start(chat=approving, content='/tool demo.sleep {"seconds": 30, "label": "raced"}')
    worker, outcome = _run_in_thread(turn)
    asked = _waiting_call(turn)
    from streams import approvals

    # Two members answer at once: the first answer is the one; the other is told.
    assert approvals.approval_decide(stream_id=turn.stream.id, call_id=asked["callId"], approve=False) == "decided"
    url = f"/api/mothership/chats/{approving.id}/tool-calls/{asked['callId']}/approval"
    late = api.post(url, {"approve": True}, format="json")
    assert late.status_code in (409, 404)  # 409 while its turn lives on, 404 once it ended
    worker.join(20)
    assert Message.objects.get(pk=turn.assistant_message.pk).tool_calls[0]["status"] == "denied"

    waiting = stream_start(chat=approving, content='/tool demo.sleep {"seconds": 30, "label": "stopped"}')
    worker, outcome = _run_in_thread(waiting)
    _waiting_call(waiting)
    assert stream_cancel(chat=approving, stream_id=waiting.stream.id).cancelled is True
    worker.join(10)
    message = Message.objects.get(pk=waiting.assistant_message.pk)
    assert (outcome["run"], message.status, message.tool_calls[0]["status"]) == ("cancelled", "cancelled", "cancelled")
    assert api.get(f"/api/mothership/chats/{approving.id}").json()["state"] == "cancelled"


def test_a_running_call_names_its_tool_on_the_tile_and_in_the_snapshot_until_it_answers(tool_chat, demo_log):
    from django.template.loader import render_to_string

    from mothership.selectors import chat_views_by_id
    from streams.selectors import stream_snapshot

    turn = stream_start(chat=tool_chat, content='/tool demo.sleep {"seconds": 1.5, "label": "tile"}')
    worker, outcome = _run_in_thread(turn)
    wait_for(lambda: any(r.get("label") == "tile" for r in demo_records(demo_log)), 20, "the server to start the call")

    (view,) = chat_views_by_id([tool_chat.pk])
    tile = render_to_string("mothership/_tile.html", {"tile": view})
    (running,) = stream_snapshot(stream_id=turn.stream.id)["tool_calls"]
    worker.join(20)

    assert view.state == "streaming" and view.running_tool[0] == "demo.sleep"
    assert "running demo.sleep" in tile and "data-since" in tile
    assert (running["tool"], running["status"], running["content"]) == ("demo.sleep", "running", "")
    assert outcome["run"] == "completed"
    (after,) = chat_views_by_id([tool_chat.pk])
    assert after.running_tool is None and after.state == "idle"


def test_a_members_tool_calls_are_limited_to_their_rate_and_the_model_is_told(tool_chat, user, settings):
    from mothership.infra.throttles import user_rate_reset

    settings.MOTHERSHIP_TOOL_CALL_RATE = "2/min"
    user_rate_reset(scope="tool_call", user=user)
    records = []
    for _ in range(3):
        turn = stream_start(chat=tool_chat, content='/tool demo.roll {"sides": 6}', user=user)
        assert stream_run(stream_id=turn.stream.id) == "completed"
        records += Message.objects.get(pk=turn.assistant_message.pk).tool_calls

    assert [r["status"] for r in records] == ["ok", "ok", "error"]
    assert "too many tool calls" in records[-1]["content"]
