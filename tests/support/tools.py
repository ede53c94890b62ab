"""The demo MCP server (``mothership/demo_tools.py``) as tests configure it: a real child process
over stdio, which writes each call's start, end or cancellation to ``log`` (its own record)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mothership.infra.mcp.config import ServerConfig, parse_servers
from tests.support.processes import ROOT


def demo_entry(log: Path, *, name: str = "demo", **extra) -> dict:
    env = {"MOTHERSHIP_DEMO_TOOLS_LOG": str(log), "PYTHONPATH": str(ROOT)}
    return {"name": name, "command": sys.executable, "args": ["-m", "mothership.demo_tools"], "env": env, **extra}


def demo_servers(log: Path, **extra) -> tuple[ServerConfig, ...]:
    return parse_servers(json.dumps([demo_entry(log, **extra)]))


def demo_records(log: Path) -> list[dict]:
    """What the demo server recorded, one dict per call event."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
