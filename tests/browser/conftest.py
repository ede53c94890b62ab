"""Browser tests: Debian's chromium driven by Playwright against a real server, worker and beat.

The stack is the app's own processes on a queue of their own, with a model slow enough to be
stopped mid-reply, a 3 s liveness TTL (so a killed worker's tile clears quickly), a 0.5 s sweep
and a 0.2 s warming tick.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.tools import demo_entry

CHROMIUM = os.environ.get("MOTHERSHIP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


class Stack:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.queue = f"browser-{uuid.uuid4().hex[:8]}"
        self.env = {
            "MOTHERSHIP_CELERY_QUEUE": self.queue,
            "MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": 60,
            "MOTHERSHIP_LOCAL_REPLY_TOKENS": 400,
            "MOTHERSHIP_STREAM_LOCK_TTL": 3,
            "MOTHERSHIP_STREAM_HEARTBEAT": 1,
            "MOTHERSHIP_SWEEP_INTERVAL": 0.5,
            "MOTHERSHIP_WARMING_TICK": 0.2,
            "MOTHERSHIP_WARMING_MIN_INTERVAL": 1,
            "MOTHERSHIP_STALL_SECONDS": 2,
            # Two models, so the chat page shows its model picker (both offline); the second cannot
            # go on from kept text, as an OpenAI-compatible model without prefill cannot, nor read images.
            "LLM_MODELS": '[{"id": "mothership-local-1", "provider": "local", "label": "Local"},'
            ' {"id": "local-terse", "provider": "local", "label": "Local (terse)", "prefill": false, "images": false}]',
            # The demo tool server twice: "demo" runs calls at once, "ask" waits for a person.
            "MCP_SERVERS": json.dumps([demo_entry(tmp / "tools.jsonl"), demo_entry(tmp / "ask.jsonl", name="ask", approve=True)]),
        }
        self.worker = processes.start_worker(tmp, name="browser-worker", **self.env)
        self.server, self.url = processes.start_server(tmp, **self.env)
        self.beat = processes.start_beat(tmp, **self.env)

    def restart_server(self) -> None:
        """Drop every connection (a network cut, as the browser sees it) and serve again, same port."""
        self.server.stop()
        self.server, _ = processes.start_server(self.tmp, port=int(self.url.rsplit(":", 1)[1]), **self.env)

    def restart_worker(self) -> None:
        self.worker.stop()
        self.worker = processes.start_worker(self.tmp, name="browser-worker", **self.env)

    def stop(self) -> None:
        for proc in (self.beat, self.server, self.worker):
            proc.stop()


# One stack for the browser tests, stopped after the last of them: its sweeper and beat share the
# test database, and would sweep other tests' streams (whose liveness lives in their own Redis).
@pytest.fixture(scope="package")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    s = Stack(tmp_path_factory.mktemp("browser"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the tests' own ORM calls are
    # plain synchronous ones, which Django would otherwise refuse while that loop exists.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def login(chromium, stack, make_user):
    """A logged-in browser context factory; every page's console errors fail the test."""
    contexts, errors = [], []

    def open_context(user=None, viewport=None):
        user = user or make_user(password="pw-123456")
        context = chromium.new_context(viewport=viewport or {"width": 1200, "height": 900})
        contexts.append(context)
        context.on("page", lambda page: _watch(page, errors))
        # A refused script, style, image or socket is a console error (the Content-Security-Policy).
        context.add_init_script(CSP_WATCH)
        page = context.new_page()
        page.goto(stack.url + "/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", "pw-123456")
        page.click("button[type=submit]")
        page.wait_for_url(stack.url + "/")
        return context, page

    open_context.allowed = []  # regexes of console errors a test provokes on purpose
    yield open_context
    for context in contexts:
        context.close()
    unexpected = [e for e in errors if not any(re.search(p, e) for p in open_context.allowed)]
    assert unexpected == [], f"console errors: {unexpected}"


CSP_WATCH = """document.addEventListener("securitypolicyviolation", (e) =>
  console.error(`Content-Security-Policy violation: ${e.violatedDirective} refused ${e.blockedURI || "inline"}`));"""


def _watch(page, errors: list) -> None:
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
