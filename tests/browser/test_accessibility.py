"""axe-core over every page a person uses, light and dark, desktop and phone: no violation of any
impact. The log-in page, the dashboard (empty and full), the chat page empty (its suggestions),
with a Markdown reply, its menu open, while a reply streams, once it is stopped and with cache
warming open. The settings pages and the workspace page: tests/browser/test_settings.py. The same pages are the README's
screenshots (``make screenshots`` sets MOTHERSHIP_SAVE_SCREENSHOTS=1)."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from chats.services import chat_create, workspace_create

from .conftest import SCREENSHOTS
from .pages import axe_violations, send, wait_streaming

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.screenshots]

REPLY = """## A rendered reply

Replies render as **Markdown**, with `code`, lists and highlighted blocks:

- streamed token by token
- the same after a reload

```python
def answer(question):
    return "42"
```
"""

VIEWPORTS = (("desktop", {"width": 1280, "height": 860}), ("phone", {"width": 390, "height": 844}))


def _shot(page, name: str, full_page: bool = False) -> None:
    if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_has_no_accessibility_violation(chromium, login, make_user, stack, scheme):
    user = make_user("ada-a11y", password="pw-123456")
    workspace = workspace_create(name="Research", owner=user)
    empty = workspace_create(name="Empty", owner=user)
    chat_create(workspace=workspace, title="Moon landing sources", created_by=user)
    chat = chat_create(workspace=workspace, title="Release notes draft", created_by=user)
    running = chat_create(workspace=workspace, title="A long answer", created_by=user)
    found = {}
    for name, viewport in VIEWPORTS:
        where = f"{scheme}, {name}"
        # Signed out: the log-in page.
        anonymous = chromium.new_context(viewport=viewport, color_scheme=scheme)
        try:
            page = anonymous.new_page()
            page.goto(f"{stack.url}/accounts/login/")
            found[f"log-in, {where}"] = axe_violations(page)
            _shot(page, f"login-{name}-{scheme}")
        finally:
            anonymous.close()

        context, home = login(user, viewport=viewport)
        home.emulate_media(color_scheme=scheme)
        home.goto(f"{stack.url}/?workspace={empty.id}")
        expect(home.locator("#no-tiles")).to_be_visible()
        found[f"empty dashboard, {where}"] = axe_violations(home)
        _shot(home, f"dashboard-empty-{name}-{scheme}")

        page = context.new_page()
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{stack.url}/chats/{chat.id}/")
        if name == "desktop":
            send(page, "/echo " + REPLY)
            expect(page.locator("#stop")).to_be_hidden(timeout=15000)
            expect(page.locator(".msg--assistant .msg-meta")).not_to_be_empty()
        else:
            expect(page.locator(".msg--assistant .msg-content h2")).to_have_count(1)
        found[f"chat with a Markdown reply, {where}"] = axe_violations(page)
        _shot(page, f"chat-{name}-{scheme}")
        page.locator("#chat-menu > summary").click()
        expect(page.locator("#delete-chat")).to_be_visible()
        found[f"chat, its menu open, {where}"] = axe_violations(page)
        page.keyboard.press("Escape")
        page.locator("#warming-section > summary").click()
        expect(page.locator("#warming-enabled")).to_be_visible()
        found[f"chat, warming open, {where}"] = axe_violations(page)
        page.locator("#warming-section > summary").click()  # folded again for the next pages

        page.goto(f"{stack.url}/chats/{running.id}/")
        if name == "desktop":
            expect(page.locator(".suggestion").first).to_be_visible()
            found[f"an empty chat's suggestions, {where}"] = axe_violations(page)
            _shot(page, f"chat-empty-{name}-{scheme}")
        send(page, "Tell me a long story")
        wait_streaming(page, 5)
        found[f"chat while a reply streams, {where}"] = axe_violations(page)
        home.goto(f"{stack.url}/?workspace={workspace.id}")
        expect(home.locator(f'.tile[data-chat-id="{running.id}"]')).to_have_attribute("data-state", "streaming")
        found[f"dashboard, a reply streaming, {where}"] = axe_violations(home)
        _shot(home, f"dashboard-{name}-{scheme}", full_page=True)
        page.click("#stop")
        expect(page.locator("#composer-status")).to_have_text("Stopped.")
        found[f"chat, its reply stopped, {where}"] = axe_violations(page)
    failing = {page: violations for page, violations in found.items() if violations}
    assert failing == {}, failing
