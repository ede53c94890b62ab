"""A turn's tool calls: which ones its chat allows, each run on its MCP server, and their record.

A chat allows no tool until its ``tools`` name some (``<server>.<tool>`` or ``<server>.*``). The
record of each call (``callId, tool, arguments, status, content, durationMs``) is what the seal
saves on the reply; a call still open when the turn ends is saved ``cancelled`` (a stop) or
``interrupted`` (anything else).
"""

from __future__ import annotations

import concurrent.futures
import threading

from django.conf import settings

from mothership.infra.mcp.client import ToolServers
from streams.providers import ToolCall

RUNNING = "running"  # a call's status until its result arrives (never saved: the seal closes it)

_servers: ToolServers | None = None
_servers_of = None  # the MCP_SERVERS they were made for (tests change the setting)
_servers_lock = threading.Lock()


def tool_servers() -> ToolServers:
    """The process's connections to the servers of ``MCP_SERVERS`` (made on first use)."""
    global _servers, _servers_of
    with _servers_lock:
        if _servers is None or _servers_of is not settings.MCP_SERVERS:
            if _servers is not None:
                _servers.close()
            _servers, _servers_of = ToolServers(settings.MCP_SERVERS), settings.MCP_SERVERS
        return _servers


def tool_allowed(patterns, name: str) -> bool:
    server = name.partition(".")[0]
    return any(pattern == name or pattern == f"{server}.*" for pattern in patterns or ())


class TurnTools:
    def __init__(self, patterns):
        self.patterns = list(patterns or ())
        self.records: list[dict] = []

    def open(self, call: ToolCall) -> dict:
        record = {"callId": call.call_id, "tool": call.name, "arguments": call.arguments, "status": RUNNING}
        record.update(content="", durationMs=None)
        self.records.append(record)
        return record

    def refusal(self, name: str) -> str | None:
        """Why this turn may not call ``name`` (a sentence for the model and the user), or None."""
        if not tool_allowed(self.patterns, name):
            return f"The tool {name} is not enabled in this conversation."
        server = name.partition(".")[0]
        config = tool_servers().configs.get(server)
        if config is None:
            return f"No tool server is named {server}."
        return None

    def needs_approval(self, name: str) -> bool:
        """Every call of a server configured with ``"approve": true`` waits for a person."""
        config = tool_servers().configs.get(name.partition(".")[0])
        return config is not None and config.approve

    def start(self, call: ToolCall) -> concurrent.futures.Future:
        server, _, tool = call.name.partition(".")
        return tool_servers().call(server, tool, call.arguments)

    def close_open(self, status: str, content: str) -> None:
        for record in self.records:
            if record["status"] == RUNNING:
                record.update(status=status, content=content)
