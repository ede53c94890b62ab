"""The tool loop with the HTTP models: Anthropic's ``tool_use`` blocks and OpenAI's ``tool_calls``
deltas, streamed from local servers that speak each wire format, against the demo MCP server as
a real child process. The model is offered the chat's tools, its calls run, the results go back
in the API's own shape, every round is charged as it is sent, and a warm sends the tools its
next turn sends."""

from __future__ import annotations

import json
import sys
from decimal import Decimal

import pytest

from chats.models import Message
from chats.selectors import conversation_prefix
from mothership.infra.mcp.config import parse_servers
from spend.services import budget_set
from streams import eventlog, events
from streams.models import Stream
from streams.providers import get_provider
from streams.tools import offered_tools
from tests.support.event_schemas import schema_errors
from tests.support.fake_anthropic import API_KEY, FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.tools import demo_records, demo_servers
from tests.support.turns import run_turn
from warming.dispatch import warming_warm_now

pytestmark = pytest.mark.django_db(transaction=True)

ROLL = '{"sides": 6, "count": 2}'


@pytest.fixture
def demo_log(tmp_path):
    return tmp_path / "demo-tools.jsonl"


@pytest.fixture(params=["anthropic", "openai"])
def model(request, settings, turns_not_enqueued, demo_log):
    settings.MCP_SERVERS = demo_servers(demo_log)
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT, settings.MOTHERSHIP_DELTA_FLUSH_MS = 0, 5, 0
    if request.param == "anthropic":
        server = FakeAnthropic()
        settings.LLM_PROVIDER, settings.LLM_MODEL = "anthropic", "claude-fake"
        settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL = API_KEY, server.url
    else:
        server = FakeOpenAI()
        settings.LLM_PROVIDER, settings.LLM_MODEL = "openai", "gpt-fake"
        settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "sk-test", server.url
    server.kind = request.param
    yield server
    server.stop()


@pytest.fixture
def tool_chat(chat):
    chat.tools = ["demo.*"]
    chat.save(update_fields=["tools"])
    return chat


def _offered(body: dict) -> list[str]:
    return [t["name"] if "name" in t else t["function"]["name"] for t in body.get("tools", [])]


def _results_sent(kind: str, body: dict) -> list[dict]:
    """The tool results the request ends with, as (call id, text, is_error)."""
    if kind == "anthropic":
        blocks = body["messages"][-1]["content"]
        return [
            {"id": b["tool_use_id"], "text": b.get("content", ""), "error": b.get("is_error", False)}
            for b in blocks
            if b["type"] == "tool_result"
        ]
    tail = []
    for message in reversed(body["messages"]):
        if message["role"] != "tool":
            break
        tail.insert(0, {"id": message["tool_call_id"], "text": message["content"], "error": None})
    return tail


def test_the_model_is_offered_the_chats_tools_and_its_call_runs_and_goes_back(model, tool_chat, demo_log):
    status, stream, message = run_turn(tool_chat, f"roll for me: call demo__roll {ROLL}")

    assert status == "completed"
    first, second = (r["body"] for r in model.requests)
    # Offered under names the APIs take (no dots), with the server's own schema.
    assert _offered(first) == ["demo__clock", "demo__roll", "demo__sleep"]
    schema = first["tools"][1].get("input_schema") or first["tools"][1]["function"]["parameters"]
    assert schema["type"] == "object" and "sides" in schema["properties"]
    # The call ran on the server (only it rolls dice), and its result went back in the API's own shape.
    log = eventlog.read(stream.id)
    for event in log:
        assert schema_errors(event) == [], event
    call = next(e for e in log if e["type"] == events.TOOL_CALL)
    result = next(e for e in log if e["type"] == events.TOOL_RESULT)
    assert (call["tool"], call["arguments"]) == ("demo.roll", {"sides": 6, "count": 2})
    assert result["status"] == "ok" and " = " in result["content"]
    (sent,) = _results_sent(model.kind, second)
    assert (sent["id"], sent["text"]) == (call["callId"], result["content"])
    # One reply: the first round's words, then the second's, in the log in that order.
    types = [e["type"] for e in log]
    assert types.index(events.TOOL_CALL) > types.index(events.DELTA)
    assert message.content == f"Let me check.The tool said: {result['content']}"
    assert message.tool_calls[0]["status"] == "ok" and message.tool_calls[0]["tool"] == "demo.roll"
    # Usage is both rounds'.
    assert message.output_tokens > (11 if model.kind == "anthropic" else 12)


def test_a_chat_without_tools_offers_none_and_a_made_up_call_is_refused_to_the_model(model, chat, demo_log):
    status, stream, message = run_turn(chat, 'call demo__sleep {"seconds": 0.01}')

    assert status == "completed"
    first, second = (r["body"] for r in model.requests)
    assert "tools" not in first
    assert demo_records(demo_log) == []  # never reached the server
    (sent,) = _results_sent(model.kind, second)
    assert "not enabled in this conversation" in sent["text"]
    if model.kind == "anthropic":
        assert sent["error"] is True  # the API's own mark of a failed call
    assert message.tool_calls[0]["status"] == "error"


def test_two_calls_in_one_round_both_run_and_both_results_go_back_in_one_message(model, tool_chat, demo_log):
    status, stream, message = run_turn(tool_chat, 'call demo__clock {} and call demo__roll {"sides": 2}')

    assert status == "completed"
    assert [c["tool"] for c in message.tool_calls] == ["demo.clock", "demo.roll"]
    sent = _results_sent(model.kind, model.requests[-1]["body"])
    assert [s["id"] for s in sent] == [c["callId"] for c in message.tool_calls]


def test_a_turn_stops_calling_tools_at_its_round_limit(model, tool_chat, settings, demo_log):
    settings.MOTHERSHIP_MAX_TOOL_ROUNDS = 2

    status, stream, message = run_turn(tool_chat, 'call demo__sleep {"seconds": 0.01} again')

    assert status == "completed"
    assert len(model.requests) == 3  # the first round and two after results
    assert [c["status"] for c in message.tool_calls] == ["ok", "ok", "error"]
    assert "limit of 2 rounds" in message.tool_calls[-1]["content"]
    assert len([r for r in demo_records(demo_log) if r["event"] == "finished"]) == 2


def test_a_round_that_would_cross_the_budget_is_not_sent_and_the_turn_stops_budget(model, tool_chat, workspace, settings):
    # Prices that make the second round's prompt (the first's, the call and its result) cross the budget.
    settings.MOTHERSHIP_PRICES = {"default": {"input": 200_000.0, "output": 1.0, "cache_read": 200_000.0, "cache_write": 1.0}}
    budget_set(workspace_id=workspace.pk, monthly_usd=Decimal("5"), member_daily_usd=None)

    status, stream, message = run_turn(tool_chat, f"call demo__roll {ROLL}")

    assert len(model.requests) == 1  # the round after the call was never sent
    assert (stream.status, stream.reason) == ("cancelled", "budget")
    assert message.tool_calls[0]["status"] == "ok"  # the call itself was made, and recorded
    assert eventlog.read(stream.id)[-1]["type"] == events.CANCELLED


def test_a_warm_sends_the_tools_system_and_messages_of_the_next_turn_byte_for_byte(model, tool_chat, settings):
    tool_chat.system_prompt = "Answer briefly"
    tool_chat.save(update_fields=["system_prompt"])
    run_turn(tool_chat, "first question")

    warmed = warming_warm_now(chat_id=tool_chat.pk, inline=True)
    warm = model.requests[-1]["body"]
    run_turn(tool_chat, "second question")
    turn = model.requests[-1]["body"]

    assert warmed.outcome == "warmed"
    dump = json.dumps
    assert _offered(warm) == ["demo__clock", "demo__roll", "demo__sleep"]
    assert dump(warm["tools"]) == dump(turn["tools"]) and warm.get("system") == turn.get("system")
    # The conversation up to the new question; Anthropic's warm asks one more "." of its own.
    sent = warm["messages"][:-1] if model.kind == "anthropic" else warm["messages"]
    assert dump(sent) == dump(turn["messages"][:-1])
    if model.kind != "anthropic":
        return  # OpenAI's cache is the server's own; no breakpoints to check
    usage = Message.objects.filter(chat=tool_chat, role="assistant").order_by("created_at").last()
    assert usage.cache_read_tokens > 0 and usage.input_tokens == 0  # the turn read what the warm wrote

    # The same tools read the cached prefix; another set of tools is another prefix: nothing is read.
    prefix = conversation_prefix(chat_id=tool_chat.pk)
    assert get_provider().warm(messages=prefix, tools=offered_tools(["demo.*"])).cache_read_tokens > 0
    assert get_provider().warm(messages=prefix, tools=offered_tools(["demo.roll"])).cache_read_tokens == 0


def test_a_tool_call_stream_is_resumable_from_any_seq_with_no_gap(model, tool_chat):
    status, stream, _ = run_turn(tool_chat, f"call demo__roll {ROLL}")
    log = eventlog.read(stream.id)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    middle = next(e["seq"] for e in log if e["type"] == events.TOOL_CALL)
    assert eventlog.read(stream.id, after_seq=middle - 1) == log[middle - 1 :]
    assert Stream.objects.get(pk=stream.id).status == "completed"


def test_a_published_server_nobody_here_wrote_is_offered_and_called(model, chat, settings):
    """``mcp-server-time`` from PyPI (the MCP project's own reference server), over stdio."""
    settings.MCP_SERVERS = parse_servers(
        json.dumps([{"name": "time", "command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}])
    )
    chat.tools = ["time.*"]
    chat.save(update_fields=["tools"])

    status, stream, message = run_turn(chat, 'call time__get_current_time {"timezone": "Europe/Paris"}')

    assert status == "completed"
    first = model.requests[0]["body"]
    assert sorted(_offered(first)) == ["time__convert_time", "time__get_current_time"]
    (call,) = message.tool_calls
    assert (call["tool"], call["status"]) == ("time.get_current_time", "ok")
    assert json.loads(call["content"])["timezone"] == "Europe/Paris"
    assert call["content"] in message.content  # the model was sent the result
