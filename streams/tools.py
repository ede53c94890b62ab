"""The process's MCP tool servers, and which of their tools a chat offers its model.

A chat offers no tool until its ``tools`` name some (``<server>.<tool>`` or ``<server>.*``). What
it offers is one list, in one order (the servers' order in ``MCP_SERVERS``, then each server's
own), read from the servers' cached tool lists: a turn and the warm of its prefix send the same.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from mothership.infra.mcp.client import ToolServers, ToolSpec, ToolUnavailable

logger = logging.getLogger(__name__)

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


def offered_tools(patterns) -> list[ToolSpec]:
    """The tools a chat with these ``tools`` patterns offers its model. A server that cannot be
    reached offers nothing this time (logged; a call the model makes anyway is answered with why)."""
    if not patterns:
        return []
    servers = tool_servers()
    wanted = {pattern.partition(".")[0] for pattern in patterns}
    offered: list[ToolSpec] = []
    for name in servers.configs:
        if name not in wanted:
            continue
        try:
            listed = servers.list_tools(name)
        except (ToolUnavailable, TimeoutError) as exc:
            logger.warning("MCP server %s offers no tools now: %s", name, exc)
            continue
        offered += [tool for tool in listed if tool_allowed(patterns, tool.name)]
    return offered
