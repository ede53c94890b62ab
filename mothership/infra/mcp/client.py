"""The worker's connections to its MCP tool servers, on the official ``mcp`` SDK.

One event-loop thread per process owns one connection per configured server: opened on first
use, reused by every turn, opened again after it failed. A stdio server is a child of the worker
and ends with it (its stdin closes). Each server's tool list is cached and dropped when the server
sends ``notifications/tools/list_changed``.

A call runs on that loop; the turn's thread holds a ``concurrent.futures.Future``. Cancelling it
(Stop) abandons the request, and the SDK tells the server: ``notifications/cancelled`` with the
request id on stdio, the request's own HTTP stream closed on streamable HTTP. The turn does not
wait for a server that ignores it: the abandoned call never pins a worker thread or a turn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

from mothership.infra.mcp.config import ServerConfig
from mothership.infra.secrets import mask

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 20.0  # seconds for a server to start and answer its handshake
LIST_TIMEOUT = 20.0
_RETRY_AFTER_FAILURE = 2.0  # seconds before a server that could not be reached is tried again


class ToolUnavailable(Exception):
    """The tool's server cannot be reached or does not offer it; the message says why, for the user."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model is offered it: ``name`` is ``<server>.<tool>``."""

    name: str
    description: str
    input_schema: dict


@dataclass(frozen=True)
class ToolOutcome:
    status: str  # "ok" | "error"
    content: str
    duration_ms: int


class _Connection:
    """One server's session, held open by a task on the loop until it fails or the process ends."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.client = None
        self.tools: list[ToolSpec] | None = None
        self._ready: asyncio.Future | None = None
        self._failed_at = 0.0
        self._failure = ""

    async def session(self):
        if self.client is not None:
            return self.client
        if self._ready is None or self._ready.done():
            if self._failure and time.monotonic() - self._failed_at < _RETRY_AFTER_FAILURE:
                raise ToolUnavailable(self._failure)
            self._ready = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._hold(self._ready))
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), CONNECT_TIMEOUT)
        except TimeoutError:
            raise ToolUnavailable(f"The tool server {self.config.name} did not answer within {CONNECT_TIMEOUT:.0f} s.") from None

    async def _hold(self, ready: asyncio.Future) -> None:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters, stdio_client
        from mcp.client.streamable_http import streamable_http_client

        config = self.config
        if config.command:
            params = StdioServerParameters(command=config.command, args=list(config.args), env=config.env or None)
            # The server's stderr goes to the process's own (Celery replaces sys.stderr with a logger, which has no file).
            target = stdio_client(params, errlog=sys.__stderr__ or open(os.devnull, "w"))  # noqa: SIM115
        else:
            import httpx2

            target = streamable_http_client(config.url, http_client=httpx2.AsyncClient(headers=config.headers, timeout=None))
        try:
            async with Client(target, message_handler=self._on_message, cache=None) as client:
                self.client, self._failure = client, ""
                ready.set_result(client)
                await asyncio.Event().wait()  # held for the life of the process, or until the session fails
        except asyncio.CancelledError:  # the process closes its connections (``ToolServers.close``)
            if not ready.done():
                ready.set_exception(ToolUnavailable(f"The tool server {config.name} was closed."))
            raise
        except BaseException as exc:
            self._failure = f"The tool server {config.name} could not be reached ({_brief(exc)})."
            self._failed_at = time.monotonic()
            logger.warning("MCP server %s: %s", config.name, _brief(exc))
            if not ready.done():
                ready.set_exception(ToolUnavailable(self._failure))
        finally:
            self.client, self.tools = None, None

    async def _on_message(self, message) -> None:
        from mcp_types import ServerNotification, ToolListChangedNotification

        if isinstance(message, ServerNotification) and isinstance(message.root, ToolListChangedNotification):
            self.tools = None  # listed again on next use
        elif isinstance(message, ToolListChangedNotification):
            self.tools = None


def _brief(exc: BaseException) -> str:
    """One line about a failure (an exception group's first leaf), secrets masked (``mothership.infra.secrets``)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = mask(str(exc).splitlines()[0]) if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class ToolServers:
    """The process's MCP servers. Thread-safe: every call goes through the one loop thread."""

    def __init__(self, configs: tuple[ServerConfig, ...]):
        self.configs = {c.name: c for c in configs}
        self._connections = {name: _Connection(c) for name, c in self.configs.items()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _run(self, coro) -> concurrent.futures.Future:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="mcp-loop", daemon=True).start()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self, timeout: float = 10.0) -> None:
        """End every connection (a stdio server's process with it) and the loop thread."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return

        async def end():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=timeout) if tasks else None

        try:
            asyncio.run_coroutine_threadsafe(end(), loop).result(timeout + 1)
        except Exception:
            logger.warning("MCP connections did not all end in time", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)

    def config(self, server: str) -> ServerConfig:
        try:
            return self.configs[server]
        except KeyError:
            raise ToolUnavailable(f"No tool server is named {server}.") from None

    def list_tools(self, server: str) -> list[ToolSpec]:
        """The server's tools (cached until it says they changed)."""
        self.config(server)
        return self._run(self._list(server)).result(timeout=CONNECT_TIMEOUT + LIST_TIMEOUT + 1)

    async def _list(self, server: str) -> list[ToolSpec]:
        connection = self._connections[server]
        if connection.tools is None:
            client = await connection.session()
            try:
                listed = await asyncio.wait_for(client.list_tools(), LIST_TIMEOUT)
            except Exception as exc:
                raise ToolUnavailable(f"The tool server {server} did not list its tools ({_brief(exc)}).") from None
            connection.tools = [
                ToolSpec(name=f"{server}.{t.name}", description=t.description or "", input_schema=dict(t.input_schema or {}))
                for t in listed.tools
            ]
        return connection.tools

    def call(self, server: str, tool: str, arguments: dict) -> concurrent.futures.Future:
        """Start a call; the future's result is a ``ToolOutcome``. ``future.cancel()`` abandons it on the server."""
        config = self.config(server)
        return self._run(self._call(config, tool, arguments))

    async def _call(self, config: ServerConfig, tool: str, arguments: dict) -> ToolOutcome:
        started = time.monotonic()

        def outcome(status: str, content: str) -> ToolOutcome:
            return ToolOutcome(status, content, round((time.monotonic() - started) * 1000))

        try:
            client = await self._connections[config.name].session()
        except ToolUnavailable as exc:
            return outcome("error", str(exc))
        try:
            # A call past its bound is abandoned as a Stop abandons it (the server is told).
            async with asyncio.timeout(config.timeout):
                result = await client.call_tool(tool, arguments)
        except TimeoutError:
            return outcome("error", f"The tool {config.name}.{tool} took longer than {config.timeout:g} s and was stopped.")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("MCP call %s.%s failed: %s", config.name, tool, _brief(exc))
            return outcome("error", f"The tool {config.name}.{tool} failed: {_brief(exc)}")
        if result.is_error:  # the server's own words, masked as a provider's are
            return outcome("error", mask(result_text(result)))
        return outcome("ok", result_text(result))  # an answer is the tool's data: a hash or a path in it stays


def result_text(result) -> str:
    """A tool result as text: its text blocks, and a line naming any other block (never its bytes)."""
    parts = []
    for block in result.content or []:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')}]")
    if not parts and getattr(result, "structured_content", None) is not None:
        import json

        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)
