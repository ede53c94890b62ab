"""An MCP server (stdio) whose errors say too much, as real ones do: its ``fail`` tool's error
repeats the key it was configured with (``LEAKY_TOOLS_KEY`` in its ``env``), an upstream URL with
a ``key=`` parameter and a bearer token."""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("leaky", log_level="WARNING")
UPSTREAM_KEY = "AIzaSyUPSTREAM0123456789abcdefghijklmnop"


@server.tool()
def fail() -> str:
    """Always fails, saying too much."""
    key = os.environ.get("LEAKY_TOOLS_KEY", "")
    raise ToolError(
        f"upstream refused key {key}: GET https://maps.example.com/v1/geocode?key={UPSTREAM_KEY}&q=x "
        "with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl"
    )


if __name__ == "__main__":
    server.run("stdio")
