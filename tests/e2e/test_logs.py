"""No secret ever logged, over the whole app (``manage.py runall``: web, turn worker, background
worker, beat) with JSON logs at DEBUG: a realistic session (sign in, a named API token and DRF's,
a socket ticket, an old client's ``?token=`` handshake, a turn that calls a tool of an MCP server
configured with a secret ``env`` value, a 50 MB form post), then every line every process wrote is
grepped for each secret the session used. Every line is one JSON object, none is written twice,
and the lines of a request, a socket and a turn carry its request id, chat and stream."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
import websockets

from tests.support.processes import ROOT, free_port
from tests.support.tools import demo_entry
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "Pw-0f-the-Operator-4417"
MCP_SECRET = "mcp-env-S3cret-Value-9d21"
PROVIDER_KEY = "sk-test-Provider-Key-0000aaaa1111"
GIVEN_REQUEST_ID = "proof-req.0042"


def _env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MOTHERSHIP_EMBEDDED_REDIS"}}
    entry = demo_entry(tmp_path / "tools.jsonl")
    entry["env"]["DEMO_SECRET"] = MCP_SECRET
    env.update(
        MOTHERSHIP_SQLITE_PATH=str(tmp_path / "app.sqlite3"),
        PYTHONUNBUFFERED="1",
        DJANGO_DEBUG="1",
        MOTHERSHIP_LOG_FORMAT="json",
        MOTHERSHIP_LOG_LEVEL="DEBUG",
        WEB_CONCURRENCY="1",
        MOTHERSHIP_WORKER_PROCESSES="1",
        MOTHERSHIP_BACKGROUND_WORKER_PROCESSES="1",
        MOTHERSHIP_WORKER_CONCURRENCY="4",
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND="200",
        MOTHERSHIP_LOCAL_REPLY_TOKENS="20",
        MCP_SERVERS=json.dumps([entry]),
        OPENAI_API_KEY=PROVIDER_KEY,
    )
    return env


def _manage(env, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def _sign_in(base: str, username: str) -> httpx.Client:
    browser = httpx.Client(base_url=base, timeout=30)
    browser.get("/accounts/login/")
    answer = browser.post(
        "/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"Referer": base + "/accounts/login/"},
    )
    assert answer.status_code == 302, answer.text[:500]
    return browser


async def _socket_session(base: str, *, ticket: str, api_token: str, named_key: str, cookie: str, chat_id: str) -> None:
    ws_base = base.replace("http", "ws", 1)
    async with websockets.connect(f"{ws_base}/ws/?ticket={ticket}", close_timeout=0.5) as ws:
        await ws.send(json.dumps({"type": "subscribe", "conversationId": chat_id}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
    # The browser's socket: its session cookie in the handshake (the websockets library's debug dump).
    async with websockets.connect(f"{ws_base}/ws/", additional_headers={"Cookie": cookie}, close_timeout=0.5) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
    # An old client's credential in the URL (refused unless MOTHERSHIP_WS_TOKEN_IN_URL): never logged either way.
    for key in (api_token, named_key):
        try:
            async with websockets.connect(f"{ws_base}/ws/?token={key}", close_timeout=0.5):
                pass
        except websockets.InvalidStatus:
            pass
    with pytest.raises(websockets.InvalidStatus):  # and a refused one, logged as such
        async with websockets.connect(f"{ws_base}/ws/?token=msk_not-a-live-token-at-all", close_timeout=0.5):
            pass


def test_a_whole_sessions_logs_hold_no_secret_and_every_line_is_json_once_with_its_context(tmp_path):
    env = _env(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "runall.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runall", "--port", str(port), "--no-seed"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _answers(base + "/healthz"), 90, "runall to serve", every=0.3)
        workspace_id = _manage(
            env,
            "from django.contrib.auth import get_user_model; from chats.services import workspace_create; "
            f"u = get_user_model().objects.create_user('ops', password={PASSWORD!r}); "
            "print(workspace_create(name='Ops', owner=u).pk)",
        )

        browser = _sign_in(base, "ops")
        csrf = {"X-CSRFToken": browser.cookies["csrftoken"], "Referer": base + "/"}
        page = browser.post(
            "/settings/tokens/", data={"name": "ci", "csrfmiddlewaretoken": browser.cookies["csrftoken"]}, headers=csrf
        )
        named_key = re.search(r"msk_[A-Za-z0-9_-]{43}", page.text).group(0)
        api_token = httpx.post(base + "/api/auth/token", json={"username": "ops", "password": PASSWORD}).json()["token"]
        api = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Token {named_key}"})
        ticket = api.post("/api/auth/ws-ticket").json()["ticket"]

        chat = api.post("/api/mothership/chats", json={"workspace": workspace_id, "title": "ops"}).json()
        assert api.patch(f"/api/mothership/chats/{chat['id']}", json={"tools": ["demo.*"]}).status_code == 200
        sent = api.post(
            f"/api/mothership/chats/{chat['id']}/messages",
            json={"content": '/tool demo.roll {"sides": 6}'},
            headers={"X-Request-ID": GIVEN_REQUEST_ID},
        )
        assert sent.status_code == 201 and sent.headers["X-Request-ID"] == GIVEN_REQUEST_ID, sent.text
        stream_id = sent.json()["stream_id"]

        cookie = f"sessionid={browser.cookies['sessionid']}; csrftoken={browser.cookies['csrftoken']}"
        asyncio.run(
            _socket_session(base, ticket=ticket, api_token=api_token, named_key=named_key, cookie=cookie, chat_id=chat["id"])
        )
        huge = browser.post(
            "/accounts/login/",
            content=b"csrfmiddlewaretoken=x&filler=" + b"x" * (50 * 1024 * 1024),
            headers={**csrf, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert huge.status_code == 413

        def turn_line():
            return next((line for line in _lines(log_path) if line.get("message", "").startswith("turn completed")), None)

        wait_for(turn_line, 60, "the turn's last line", every=0.3)
        # The turn called the MCP server's tool (the one whose env holds a secret): its answer is a die's roll.
        replies = [
            m["content"] for m in api.get(f"/api/mothership/chats/{chat['id']}/messages").json() if m["role"] == "assistant"
        ]
        assert replies and replies[-1] in {"1", "2", "3", "4", "5", "6"}, replies
        secrets = {
            "password": PASSWORD,
            "session id": browser.cookies["sessionid"],
            "CSRF token": browser.cookies["csrftoken"],
            "DRF token": api_token,
            "named token": named_key,
            "socket ticket": ticket,
            "MCP server env value": MCP_SECRET,
            "provider key": PROVIDER_KEY,
        }
        browser.close()
        api.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    raw = log_path.read_text(errors="replace")
    leaked = [name for name, value in secrets.items() if value in raw]
    assert not leaked, f"in the log: {leaked}"

    text = raw.splitlines()
    not_json = [line for line in text if not _is_object(line)]
    assert not not_json, not_json[:10]
    twice = [line for line, n in collections.Counter(text).items() if n > 1]
    assert not twice, twice[:10]

    lines = [json.loads(line) for line in text]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert {"runall", "web", "worker", "background", "beat"} <= {line.get("process") for line in lines}
    # The turn's lines: its stream, its chat, and the id of the request that sent it (carried to the worker).
    finished = next(line for line in lines if line["message"].startswith("turn completed"))
    assert (finished["process"], finished["stream_id"], finished["chat_id"], finished["request_id"]) == (
        "worker",
        stream_id,
        chat["id"],
        GIVEN_REQUEST_ID,
    ), finished
    # A socket's message: its conversation, its user, its handshake's request id.
    subscribed = next(line for line in lines if line["message"] == "socket message on_subscribe")
    assert subscribed["chat_id"] == chat["id"] and subscribed.get("user_id") and subscribed.get("request_id")
    # Every process logs through the app's handler at the app's level: the web server's lines are
    # its own records (none wrapped by runall), a worker's DEBUG lines are there (Celery's -l INFO
    # does not override MOTHERSHIP_LOG_LEVEL).
    assert not [line for line in lines if line["logger"] == "mothership.runall.printed" and line.get("process") == "web"]
    started = next(line for line in lines if line["message"].startswith("turn started on"))
    assert (started["level"], started["stream_id"]) == ("DEBUG", stream_id)
    # The handshakes were logged, with their request ids, without their query strings' values.
    handshakes = [line["message"] for line in lines if line["logger"] == "uvicorn.error" and line.get("request_id")]
    assert any("/ws/?ticket=…" in said for said in handshakes) and any('/ws/?token=…" 403' in said for said in handshakes), (
        handshakes
    )
    # The 50 MB post: one warning, no traceback anywhere.
    # (refused as it arrives, by the body limit in front of Django: mothership/infra/uploads.py)
    refused = [line for line in lines if "bytes refused (larger than" in line["message"]]
    assert [(line["level"], line["process"]) for line in refused] == [("WARNING", "web")]
    assert not [line for line in lines if "RequestDataTooBig" in json.dumps(line)]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(errors="replace").splitlines() if _is_object(line)]
