"""axe-core over the dashboard and the chat page, light and dark, desktop and phone: no serious
or critical violation. The same pages are the README's screenshots (MOTHERSHIP_SAVE_SCREENSHOTS=1)."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from chats.services import chat_create, workspace_create

from .conftest import SCREENSHOTS
from .pages import axe_violations, send

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

REPLY = """## A rendered reply

Replies render as **Markdown**, with `code`, lists and highlighted blocks:

- streamed token by token
- the same after a reload

```python
def answer(question):
    return "42"
```
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_dashboard_and_the_chat_page_have_no_serious_accessibility_violation(login, make_user, stack, scheme):
    user = make_user("ada-a11y", password="pw-123456")
    workspace = workspace_create(name="Research", owner=user)
    chat_create(workspace=workspace, title="Moon landing sources", created_by=user)
    chat = chat_create(workspace=workspace, title="Release notes draft", created_by=user)
    save = os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS")
    for viewport, name in (({"width": 1280, "height": 860}, "desktop"), ({"width": 390, "height": 844}, "phone")):
        context, home = login(user, viewport=viewport)
        for page in context.pages:
            page.emulate_media(color_scheme=scheme)
        home.emulate_media(color_scheme=scheme)
        page = context.new_page()
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{stack.url}/chats/{chat.id}/")
        if name == "desktop":
            send(page, "/echo " + REPLY)
            expect(page.locator("#stop")).to_be_hidden(timeout=15000)
            expect(page.locator(".msg--assistant .msg-meta")).not_to_be_empty()
        else:
            expect(page.locator(".msg--assistant .msg-content h2")).to_have_count(1)
        assert axe_violations(page) == [], f"chat page, {scheme}, {name}"
        home.reload()
        assert axe_violations(home) == [], f"dashboard, {scheme}, {name}"
        if save:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"chat-{name}-{scheme}.png"))  # what the screen shows
