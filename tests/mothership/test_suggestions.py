"""An empty chat's suggestions: which ones a chat gets, for its model and its tools, and that each
does what it says (the local model echoes the Markdown sample, which renders; the tool call is
one the local model makes)."""

from __future__ import annotations

from mothership.infra.markdown import render_markdown
from mothership.suggestions import LOCAL, MARKDOWN_SAMPLE, MODEL, suggestion_list, suggestion_sets
from streams.providers import ModelSpec
from streams.providers.base import ToolCall
from streams.providers.local import LocalProvider, tool_request

DEMO = {
    "name": "demo",
    "approve": False,
    "tools": [{"name": "demo.clock", "description": ""}, {"name": "demo.roll", "description": ""}, {"name": "demo.sleep"}],
}
ASK = {"name": "ask", "approve": True, "tools": [{"name": "ask.roll", "description": ""}]}


def _by_key(suggestions):
    return {s.key: s for s in suggestions}


def _user(content):
    return [{"role": "user", "content": content}]


def test_on_the_local_model_they_show_markdown_echo_tools_and_stop():
    # Given the local model and no tool server, when an empty chat asks for its suggestions
    found = suggestion_list(kind=LOCAL, tool_servers=[], tools=[])
    # then they show Markdown, /echo, how to get tools and a long reply, in that order
    assert [s.key for s in found] == ["markdown", "echo", "tools-off", "stop"]
    assert all(s.title and s.hint and s.prompt for s in found)
    assert "MCP_SERVERS" in _by_key(found)["tools-off"].prompt


def test_the_markdown_suggestion_is_echoed_verbatim_and_renders_a_heading_a_list_a_table_and_code():
    markdown = _by_key(suggestion_list(kind=LOCAL))["markdown"]
    assert markdown.prompt == "/echo " + MARKDOWN_SAMPLE
    reply = "".join(LocalProvider(model="m", tokens_per_second=0, reply_tokens=10).reply_for(_user(markdown.prompt)))
    assert reply == MARKDOWN_SAMPLE
    html = render_markdown(reply)
    for tag in ("<h2>", "<li>", "<table>", "<pre "):
        assert tag in html, tag
    echo = _by_key(suggestion_list(kind=LOCAL))["echo"]
    assert echo.prompt.startswith("/echo ")


def test_a_chat_that_may_call_a_tool_gets_a_call_the_local_model_makes():
    # Given the demo server and a chat that may call all its tools
    found = _by_key(suggestion_list(kind=LOCAL, tool_servers=[DEMO], tools=["demo.*"]))
    # then the tool suggestion is a /tool call of a tool with arguments it answers (roll before clock)
    assert "tools-off" not in found
    call = tool_request(_user(found["tool"].prompt))
    assert isinstance(call, ToolCall)
    assert call.name == "demo.roll" and call.arguments == {"sides": 6, "count": 2}


def test_only_the_tools_the_chat_may_call_are_suggested_and_a_server_that_asks_a_person_comes_last():
    only_clock = _by_key(suggestion_list(kind=LOCAL, tool_servers=[DEMO], tools=["demo.clock"]))["tool"]
    assert only_clock.prompt == "/tool demo.clock {}"
    # Both servers allowed: the one that runs calls at once, though listed second.
    both = _by_key(suggestion_list(kind=LOCAL, tool_servers=[ASK, DEMO], tools=["ask.*", "demo.*"]))["tool"]
    assert both.prompt.startswith("/tool demo.roll ")
    # Only the approving one: offered, saying a member approves it.
    asked = _by_key(suggestion_list(kind=LOCAL, tool_servers=[ASK, DEMO], tools=["ask.roll"]))["tool"]
    assert asked.prompt.startswith("/tool ask.roll ") and "approves" in asked.hint
    # A tool without known arguments: called with none.
    other = {"name": "files", "approve": False, "tools": [{"name": "files.list"}]}
    assert _by_key(suggestion_list(kind=LOCAL, tool_servers=[other], tools=["files.*"]))["tool"].prompt == "/tool files.list {}"


def test_a_chat_whose_tools_are_off_is_told_how_to_turn_them_on():
    # Given a configured server the chat may not call
    for servers, tools in (([DEMO], []), ([DEMO], ["ask.*"]), ([{**DEMO, "tools": None}], [])):
        found = _by_key(suggestion_list(kind=LOCAL, tool_servers=servers, tools=tools))
        # then no call is offered, but how to allow one, naming the server
        assert "tool" not in found
        off = found["tools-off"]
        assert off.title == "Turn tools on" and off.prompt.startswith("/echo ") and "demo.*" in off.prompt
        assert "Tools" in off.prompt and "/tool demo." in off.prompt


def test_a_chat_that_may_call_a_server_no_worker_listed_yet_is_told_how_to_call_one():
    found = _by_key(suggestion_list(kind=LOCAL, tool_servers=[{**DEMO, "tools": None}], tools=["demo.*"]))
    assert "tool" not in found and "tools-off" not in found
    assert "/tool demo.<tool>" in found["tools-unlisted"].prompt


def test_on_a_real_model_they_are_ordinary_prompts():
    found = suggestion_list(kind=MODEL, tool_servers=[DEMO], tools=["demo.*"])
    assert 3 <= len(found) <= 4
    assert {"explain", "email"} <= {s.key for s in found}
    assert not any(s.prompt.startswith("/") for s in found)
    assert "```python" in _by_key(found)["explain"].prompt  # the code it asks to explain is in it


def _spec(id, provider):
    return ModelSpec(id=id, provider=provider, model=id, label=id)


def test_one_list_per_kind_of_model_the_picker_offers_the_chats_first():
    local, terse, claude = _spec("local-1", "local"), _spec("local-2", "local"), _spec("claude", "anthropic")
    sets = suggestion_sets(current=claude, offered=[local, terse, claude], tool_servers=[], tools=[])
    assert [(s["kind"], s["models"], s["current"]) for s in sets] == [
        (MODEL, ["claude"], True),
        (LOCAL, ["local-1", "local-2"], False),
    ]
    assert [s.key for s in sets[1]["suggestions"]][0] == "markdown"
    # One kind offered: one list.
    assert [s["kind"] for s in suggestion_sets(current=local, offered=[local, terse], tool_servers=[], tools=[])] == [LOCAL]
