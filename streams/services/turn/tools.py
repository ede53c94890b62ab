"""A turn's tool calls: which ones its chat allows, each run on its MCP server, and their record.

A chat allows no tool until its ``tools`` name some (``<server>.<tool>`` or ``<server>.*``). The
record of each call (``callId, tool, arguments, status, content, durationMs``) is what the seal
saves on the reply; a call still open when the turn ends is saved ``cancelled`` (a stop) or
``interrupted`` (anything else).
"""

from __future__ import annotations

import concurrent.futures
from types import SimpleNamespace

from rest_framework.exceptions import Throttled

from mothership.infra.mcp.client import ToolSpec
from mothership.infra.throttles import user_rate_check
from streams.providers import ToolCall
from streams.tools import offered_tools, tool_allowed, tool_servers

RUNNING = "running"  # a call's status until its result arrives (never saved: the seal closes it)


class TurnTools:
    def __init__(self, patterns, *, user_id=None):
        self.patterns = list(patterns or ())
        self.user_id = user_id  # whose rate of tool calls this turn's count against
        self.records: list[dict] = []
        self._offered: list[ToolSpec] | None = None

    def offered(self) -> list[ToolSpec]:
        """What the model is offered, read once a turn (every round offers the same)."""
        if self._offered is None:
            self._offered = offered_tools(self.patterns)
        return self._offered

    def open(self, call: ToolCall) -> dict:
        record = {"callId": call.call_id, "tool": call.name, "arguments": call.arguments, "status": RUNNING}
        record.update(content="", durationMs=None)
        self.records.append(record)
        return record

    def refusal(self, call: ToolCall) -> str | None:
        """Why this turn may not make ``call`` (a sentence for the model and the user), or None."""
        name = call.name
        if call.problem:
            return f"The call of {name} was not made: {call.problem}."
        if not tool_allowed(self.patterns, name):
            return f"The tool {name} is not enabled in this conversation."
        server = name.partition(".")[0]
        config = tool_servers().configs.get(server)
        if config is None:
            return f"No tool server is named {server}."
        if self.user_id is not None:
            try:
                user_rate_check(scope="tool_call", user=SimpleNamespace(pk=self.user_id, is_authenticated=True))
            except Throttled as exc:
                return (
                    f"The call of {name} was not made: this member's turns made too many tool calls; retry in {exc.wait:.0f} s."
                )
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
