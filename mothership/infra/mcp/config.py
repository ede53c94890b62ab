"""``MCP_SERVERS``: the tool servers an operator names, checked at start.

A JSON list; each entry is a stdio server ``{"name", "command", "args", "env"}`` or a streamable
HTTP server ``{"name", "url", "headers"}``, with optional ``"approve": true`` (every call waits
for a person) and ``"timeout"`` (seconds a call may take, 120 by default). A wrong entry stops
the app with a sentence naming the entry and the field. An entry's ``env`` and ``headers`` may
hold secrets: they never appear in a ``repr``, a log line or an answer to a user.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
TOOL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 3600.0
_STDIO, _HTTP, _COMMON = {"command", "args", "env"}, {"url", "headers"}, {"name", "approve", "timeout"}


class ConfigError(ValueError):
    """``MCP_SERVERS`` is wrong; the message names the entry and the field."""


@dataclass(frozen=True)
class ServerConfig:
    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)
    approve: bool = False
    timeout: float = DEFAULT_TIMEOUT

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"


def parse_servers(raw: str | None) -> tuple[ServerConfig, ...]:
    """The servers ``raw`` names (empty or unset: none), or ``ConfigError``."""
    if raw is None or not raw.strip():
        return ()
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"MCP_SERVERS is not valid JSON ({exc.msg} at character {exc.pos}).") from None
    if not isinstance(entries, list):
        raise ConfigError("MCP_SERVERS must be a JSON list of servers, each an object.")
    servers, names = [], set()
    for index, entry in enumerate(entries):
        server = _entry(index, entry)
        if server.name in names:
            raise ConfigError(f"MCP_SERVERS entry {index + 1} ({server.name}): field name: another entry has that name.")
        names.add(server.name)
        servers.append(server)
    return tuple(servers)


def _entry(index: int, entry) -> ServerConfig:
    where = f"MCP_SERVERS entry {index + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be an object with a name and a command or a url.")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}: field name: 1 to 32 lower-case letters, digits, - or _, starting with a letter or digit.")
    where = f"{where} ({name})"

    def wrong(field_name: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: field {field_name}: {why}")

    stdio, http = "command" in entry, "url" in entry
    if stdio and http:
        raise wrong("url", "give either a command (stdio) or a url (streamable HTTP), not both.")
    if not stdio and not http:
        raise wrong("command", "give a command (stdio) or a url (streamable HTTP).")
    allowed = _COMMON | (_STDIO if stdio else _HTTP)
    for key in entry:
        if key not in allowed:
            other = "a url" if key in _HTTP else "a command" if key in _STDIO else None
            raise wrong(key, f"not allowed beside {'a command' if stdio else 'a url'}." if other else "unknown field.")
    approve = entry.get("approve", False)
    if not isinstance(approve, bool):
        raise wrong("approve", "must be true or false.")
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT:
        raise wrong("timeout", f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:.0f}.")
    if stdio:
        command, args, env = entry["command"], entry.get("args", []), entry.get("env", {})
        if not isinstance(command, str) or not command.strip():
            raise wrong("command", "must be the program to run, a non-empty string.")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise wrong("args", "must be a list of strings.")
        _string_map(env, wrong, "env")
        return ServerConfig(name=name, command=command, args=tuple(args), env=dict(env), approve=approve, timeout=float(timeout))
    url, headers = entry["url"], entry.get("headers", {})
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise wrong("url", "must be an http:// or https:// address of the server's MCP endpoint.")
    _string_map(headers, wrong, "headers")
    return ServerConfig(name=name, url=url, headers=dict(headers), approve=approve, timeout=float(timeout))


def _string_map(value, wrong, field_name: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise wrong(field_name, "must be an object of string values.")


def split_tool_name(full: str) -> tuple[str, str]:
    """``"<server>.<tool>"`` → (server, tool); ``ValueError`` when it is not that shape."""
    server, dot, tool = full.partition(".")
    if not dot or not NAME.match(server) or not (tool == "*" or TOOL.match(tool)):
        raise ValueError(f"{full!r} is not <server>.<tool> or <server>.*")
    return server, tool
