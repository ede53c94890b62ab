"""The process's MCP tool servers, and which of their tools a chat offers its model.

A chat offers no tool until its ``tools`` name some (``<server>.<tool>`` or ``<server>.*``). What
it offers is one list, in one order (the servers' order in ``MCP_SERVERS``, then each server's
own), read from the servers' cached tool lists: a turn and the warm of its prefix send the same.
"""

from __future__ import annotations

import json
import logging
import threading

import redis
from django.conf import settings

from mothership.infra.mcp.client import ToolServers, ToolSpec, ToolUnavailable
from mothership.infra.redis import get_redis

logger = logging.getLogger(__name__)

# Each server's tool list as a worker last read it, for the pages (a web process never connects
# to a tool server: a stdio server is a child of a worker).
CATALOG_PREFIX = "mothership:mcp-tools:"
CATALOG_TTL = 7 * 24 * 3600  # seconds

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
        listed = _listed(servers, name)
        offered += [tool for tool in listed or () if tool_allowed(patterns, tool.name)]
    return offered


def _listed(servers: ToolServers, name: str) -> list[ToolSpec] | None:
    """A server's tools (recorded for the pages), or None when it cannot be reached now (logged)."""
    try:
        listed = servers.list_tools(name)
    except (ToolUnavailable, TimeoutError) as exc:
        logger.warning("MCP server %s offers no tools now: %s", name, exc)
        return None
    try:
        entries = [{"name": t.name, "description": t.description} for t in listed]
        get_redis().set(f"{CATALOG_PREFIX}{name}", json.dumps(entries), ex=CATALOG_TTL)
    except redis.RedisError:  # the pages show the server without its list meanwhile
        logger.warning("MCP server %s: its tool list was not recorded", name, exc_info=True)
    return listed


def tool_catalog_refresh() -> None:
    """List every configured server's tools now (a worker, as it starts), so the pages can offer them."""
    servers = tool_servers()
    for name in servers.configs:
        _listed(servers, name)


def tool_catalog() -> list[dict]:
    """The configured servers, for the tools picker: ``name``, ``approve`` and ``tools`` (each
    ``{"name", "description"}``, as a worker last listed them; None when none has yet). One MGET."""
    configs = settings.MCP_SERVERS
    if not configs:
        return []
    try:
        values = get_redis().mget([f"{CATALOG_PREFIX}{c.name}" for c in configs])
    except redis.RedisError:
        values = [None] * len(configs)
    return [
        {"name": c.name, "approve": c.approve, "tools": json.loads(v) if v is not None else None}
        for c, v in zip(configs, values, strict=True)
    ]
