"""The MCP client on the official SDK, against the demo server as a real child process and over
real streamable HTTP: tools listed and called, a call's cancellation recorded by the server
itself, and ``MCP_SERVERS`` refused at start with a sentence naming the entry and the field."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from mothership.infra.mcp.client import ToolServers, ToolUnavailable
from mothership.infra.mcp.config import ConfigError, parse_servers, split_tool_name
from tests.support import processes
from tests.support.tools import demo_entry, demo_records
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def stdio_servers(tmp_path_factory):
    log = tmp_path_factory.mktemp("mcp") / "calls.jsonl"
    servers = ToolServers(parse_servers(json.dumps([demo_entry(log, timeout=2)])))
    yield servers, log


def test_the_demo_servers_tools_are_listed_and_called_over_stdio(stdio_servers):
    servers, _log = stdio_servers
    assert [t.name for t in servers.list_tools("demo")] == ["demo.clock", "demo.roll", "demo.sleep"]
    roll = next(t for t in servers.list_tools("demo") if t.name == "demo.roll")
    assert set(roll.input_schema["properties"]) == {"sides", "count"} and roll.description

    outcome = servers.call("demo", "roll", {"sides": 6, "count": 3}).result(10)
    faces, total = outcome.content.split(" = ")
    assert outcome.status == "ok" and sum(map(int, faces.split(" + "))) == int(total)
    refused = servers.call("demo", "roll", {"sides": 1}).result(10)
    assert refused.status == "error" and "sides must be 2 to 1000" in refused.content


def test_cancelling_a_call_tells_the_server_which_stops_its_handler(stdio_servers):
    servers, log = stdio_servers
    call = servers.call("demo", "sleep", {"seconds": 30, "label": "to-cancel"})
    wait_for(lambda: any(r["label"] == "to-cancel" for r in demo_records(log)), 10, "the server to start the call")
    call.cancel()
    # The server's own record: its handler was cancelled (notifications/cancelled reached it).
    cancelled = wait_for(
        lambda: [r for r in demo_records(log) if r["label"] == "to-cancel" and r["event"] == "cancelled"], 5, "the cancellation"
    )
    assert len(cancelled) == 1
    assert servers.call("demo", "sleep", {"seconds": 0, "label": "after"}).result(10).status == "ok"  # the session lives on


def test_a_call_past_its_timeout_is_stopped_on_the_server_and_says_so(stdio_servers):
    servers, log = stdio_servers
    outcome = servers.call("demo", "sleep", {"seconds": 30, "label": "too-long"}).result(10)
    assert (outcome.status, outcome.duration_ms // 1000) == ("error", 2)
    assert "took longer than 2 s" in outcome.content
    wait_for(
        lambda: any(r["label"] == "too-long" and r["event"] == "cancelled" for r in demo_records(log)), 5, "the cancellation"
    )


def test_a_server_that_cannot_start_makes_its_tools_unavailable_with_a_reason():
    servers = ToolServers(parse_servers(json.dumps([{"name": "gone", "command": "/nonexistent/mcp-server"}])))
    outcome = servers.call("gone", "anything", {}).result(10)
    assert outcome.status == "error" and "The tool server gone could not be reached" in outcome.content
    with pytest.raises(ToolUnavailable, match="could not be reached"):
        servers.list_tools("gone")
    with pytest.raises(ToolUnavailable, match="No tool server is named nope"):
        servers.call("nope", "x", {})


def test_the_demo_server_over_streamable_http_is_called_and_cancelled(tmp_path):
    port, log = processes.free_port(), tmp_path / "http.jsonl"
    env = {"MOTHERSHIP_DEMO_TOOLS_LOG": str(log), "PYTHONPATH": str(processes.ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "mothership.demo_tools", "--http", str(port)], env=env)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        wait_for(lambda: _answers(url), 15, "the HTTP server to listen")
        servers = ToolServers(parse_servers(json.dumps([{"name": "web", "url": url, "headers": {"X-Test": "1"}}])))
        assert servers.call("web", "clock", {}).result(10).status == "ok"
        call = servers.call("web", "sleep", {"seconds": 30, "label": "http-cancel"})
        wait_for(lambda: any(r["label"] == "http-cancel" for r in demo_records(log)), 10, "the server to start the call")
        started = time.monotonic()
        call.cancel()
        wait_for(
            lambda: any(r["label"] == "http-cancel" and r["event"] == "cancelled" for r in demo_records(log)),
            5,
            "the cancellation",
        )
        assert time.monotonic() - started < 5
    finally:
        server.terminate()
        server.wait(10)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=0.5)
    except httpx.HTTPError:
        return False
    return True


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{", "MCP_SERVERS is not valid JSON"),
        ('{"name": "x"}', "must be a JSON list"),
        ('[{"command": "x"}]', "entry 1: field name"),
        ('[{"name": "Bad Name", "command": "x"}]', "entry 1: field name"),
        ('[{"name": "a", "command": "x", "url": "http://h/mcp"}]', "entry 1 (a): field url: give either a command"),
        ('[{"name": "a"}]', "entry 1 (a): field command: give a command (stdio) or a url"),
        ('[{"name": "a", "command": ""}]', "entry 1 (a): field command"),
        ('[{"name": "a", "command": "x", "args": "-v"}]', "entry 1 (a): field args: must be a list of strings"),
        ('[{"name": "a", "command": "x", "env": {"K": 1}}]', "entry 1 (a): field env"),
        ('[{"name": "a", "command": "x", "headers": {}}]', "entry 1 (a): field headers: not allowed beside a command"),
        ('[{"name": "a", "url": "ftp://h/mcp"}]', "entry 1 (a): field url: must be an http"),
        ('[{"name": "a", "url": "http://h/mcp", "timeout": 0}]', "entry 1 (a): field timeout"),
        ('[{"name": "a", "url": "http://h/mcp", "approve": "yes"}]', "entry 1 (a): field approve"),
        ('[{"name": "a", "url": "http://h/mcp", "colour": 1}]', "entry 1 (a): field colour: unknown field"),
        ('[{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]', "entry 2 (a): field name: another entry"),
    ],
)
def test_a_wrong_entry_is_refused_naming_the_entry_and_the_field(raw, message):
    with pytest.raises(ConfigError, match=_escaped(message)):
        parse_servers(raw)


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_an_entrys_secrets_never_show_in_its_repr():
    (server,) = parse_servers(json.dumps([{"name": "s", "url": "https://h/mcp", "headers": {"Authorization": "Bearer sk-1"}}]))
    assert "sk-1" not in repr(server) and server.headers == {"Authorization": "Bearer sk-1"}
    (child,) = parse_servers(json.dumps([{"name": "c", "command": "srv", "env": {"TOKEN": "t0p"}, "approve": True}]))
    assert "t0p" not in repr(child) and (child.approve, child.timeout, child.transport) == (True, 120.0, "stdio")


def test_tool_names_are_server_dot_tool():
    assert split_tool_name("demo.roll") == ("demo", "roll") and split_tool_name("demo.*") == ("demo", "*")
    for wrong in ("roll", ".roll", "demo.", "Demo.roll", "demo.ro ll"):
        with pytest.raises(ValueError):
            split_tool_name(wrong)
