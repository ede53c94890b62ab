"""A small MCP server that ships with Mothership, so a tool-using task runs out of the box.

``python -m mothership.demo_tools`` serves over stdio (``make run`` enables it as the server
``demo``); ``--http PORT`` serves streamable HTTP on 127.0.0.1 instead. Its tools: ``clock`` (the
time now), ``roll`` (dice) and ``sleep`` (waits, and stops at once when the call is cancelled).
With ``MOTHERSHIP_DEMO_TOOLS_LOG`` set, each call's start, end or cancellation is appended to that
file as one JSON line: the server's own record of what a client did.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import random
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer(
    "mothership-demo", log_level="WARNING", instructions="Demo tools: the time, dice, and a wait that can be cancelled."
)


def _record(**fields) -> None:
    path = os.environ.get("MOTHERSHIP_DEMO_TOOLS_LOG")
    if path:
        with open(path, "a") as log:
            log.write(json.dumps({"at": time.time(), "pid": os.getpid(), **fields}) + "\n")


@server.tool()
def clock(timezone: str = "UTC") -> str:
    """The current date and time (UTC, ISO 8601)."""
    if timezone.upper() != "UTC":
        raise ToolError("Only UTC is known to this demo clock.")
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@server.tool()
def roll(sides: int = 6, count: int = 1) -> str:
    """Roll ``count`` dice of ``sides`` sides (at most 100 dice of at most 1,000 sides)."""
    if not 2 <= sides <= 1000 or not 1 <= count <= 100:
        raise ToolError("sides must be 2 to 1000 and count 1 to 100.")
    faces = [random.randint(1, sides) for _ in range(count)]
    return f"{' + '.join(map(str, faces))} = {sum(faces)}" if count > 1 else str(faces[0])


@server.tool()
async def sleep(seconds: float = 1.0, label: str = "") -> str:
    """Wait ``seconds`` (at most 600), then say so. Cancelling the call ends the wait at once."""
    if not 0 <= seconds <= 600:
        raise ToolError("seconds must be 0 to 600.")
    _record(event="started", tool="sleep", seconds=seconds, label=label)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _record(event="cancelled", tool="sleep", label=label)
        raise
    _record(event="finished", tool="sleep", label=label)
    return f"Slept {seconds:g} s."


def main(argv: list[str]) -> None:
    if argv[:1] == ["--http"]:
        port = int(argv[1])
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main(sys.argv[1:])
