"""Share links in a real Chromium: Share on a chat's page, the link read logged out, Revoke; and
axe-core over the public page, light and dark, desktop and phone."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from chats.models import Message
from chats.services import chat_create, share_create, workspace_create

from .conftest import CSP_WATCH, SCREENSHOTS
from .pages import axe_violations, send
from .test_markdown import BROKEN_WORDS, EVERYTHING

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

REPLY = """## Landing sites

The samples came from **two** kinds of rock:

| rock | share |
|:-----|------:|
| basalt | 60 % |

```python
print("moon")
```
"""


@pytest.fixture
def user(make_user):
    return make_user("ada", password="pw-123456")


@pytest.fixture
def logged_out(chromium):
    """A fresh browser context with no session, watching its console for errors and policy violations."""
    contexts, errors = [], []

    def open_page(viewport=None):
        context = chromium.new_context(viewport=viewport or {"width": 1200, "height": 900})
        contexts.append(context)
        context.add_init_script(CSP_WATCH)
        page = context.new_page()
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield open_page
    for context in contexts:
        context.close()
    # The revoked link's page answers 404 on purpose; nothing else may fail.
    assert [e for e in errors if "status of 404" not in e] == []


def test_share_from_the_chat_page_read_it_logged_out_then_revoke_it(login, user, stack, logged_out):
    workspace = workspace_create(name="Research", owner=user)
    chat = chat_create(workspace=workspace, title="Moon landing sources", created_by=user)
    _context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    send(page, "/echo " + REPLY)
    expect(page.locator("#stop")).to_be_hidden(timeout=15000)
    expect(page.locator(".msg--assistant .msg-content h2")).to_have_text("Landing sites")

    page.get_by_role("button", name="Share", exact=True).click()

    link = page.locator("#share-links .share-link .share-url")
    expect(link).to_have_count(1)
    expect(page.locator("#share-status")).to_contain_text("anyone with it can read this conversation")
    expect(page.locator("#share-summary")).to_have_text("1 link")
    url = link.get_attribute("href")
    assert url.startswith(f"{stack.url}/s/")

    # a later message is not in the snapshot
    send(page, "/echo written after the share")
    expect(page.locator("#stop")).to_be_hidden(timeout=15000)

    reader = logged_out()
    reader.goto(url)
    expect(reader.locator("h1")).to_have_text("Moon landing sources")
    expect(reader.locator(".msg--user .msg-content")).to_contain_text("/echo ## Landing sites")
    expect(reader.locator(".msg--assistant .markdown h2")).to_have_text("Landing sites")
    expect(reader.locator(".msg--assistant .markdown td.md-align-right")).to_have_text("60 %")
    expect(reader.get_by_text("written after the share")).to_have_count(0)
    expect(reader.locator("a:not(.skip-link)")).to_have_count(1)  # only the home link (and the skip link to its main part)
    expect(reader.get_by_role("button", name="Log out")).to_have_count(0)

    page.locator("#share-links .share-revoke").click()

    expect(link).to_have_count(0)
    expect(page.locator("#share-status")).to_contain_text("revoked")
    answer = reader.reload()
    assert answer.status == 404
    expect(reader.locator("h1")).to_have_text("Link not found")
    expect(reader.get_by_text("Landing sites")).to_have_count(0)
    assert Message.objects.filter(chat=chat).count() == 4  # revoking touched nothing of the chat


@pytest.mark.screenshots
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_share_page_has_no_serious_accessibility_violation(make_user, stack, logged_out, scheme):
    owner = make_user("ada-share-a11y", password="pw-123456")
    workspace = workspace_create(name="Research", owner=owner)
    chat = chat_create(workspace=workspace, title="Release notes draft", created_by=owner)
    question = Message.objects.create(chat=chat, role="user", content="Summarise the release, with a table.")
    reply = Message.objects.create(
        chat=chat,
        role="assistant",
        parent=question,
        content=REPLY + "\nSee [the notes](https://example.org/notes).\n\n> quoted\n\n- one\n- two `code`",
        tool_calls=[{"callId": "c1", "tool": "demo.search", "status": "ok", "arguments": {}, "content": "3 results"}],
    )
    again = Message.objects.create(chat=chat, role="user", content="And the dates?", parent=reply)
    Message.objects.create(chat=chat, role="assistant", content="Half a reply", status=Message.Status.CANCELLED, parent=again)
    share = share_create(chat=chat, created_by=owner)
    save = os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS")
    for viewport, name in (({"width": 1280, "height": 860}, "desktop"), ({"width": 390, "height": 844}, "phone")):
        page = logged_out(viewport=viewport)
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{stack.url}/s/{share.token}")
        expect(page.locator(".msg--assistant .markdown h2")).to_have_count(1)
        assert axe_violations(page) == [], f"share page, {scheme}, {name}"
        # nothing is wider than the screen on a phone
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), name
        if save:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"share-{name}-{scheme}.png"), full_page=True)


def test_the_share_page_shows_math_as_tex_task_lists_and_a_table_that_scrolls_on_a_phone(make_user, stack, logged_out):
    owner = make_user("ada-share-math", password="pw-123456")
    chat = chat_create(workspace=workspace_create(name="Research", owner=owner), title="Everything", created_by=owner)
    question = Message.objects.create(chat=chat, role="user", content="Everything, please.")
    Message.objects.create(chat=chat, role="assistant", parent=question, content=EVERYTHING)
    share = share_create(chat=chat, created_by=owner)
    for scheme in ("light", "dark"):
        page = logged_out(viewport={"width": 390, "height": 844})
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{stack.url}/s/{share.token}")
        reply = page.locator(".msg--assistant .markdown")
        # Math is its TeX, as written (the page runs no script); dollar amounts are plain text
        expect(reply.locator("span.math")).to_have_count(2)
        expect(reply.locator("span.math").first).to_have_text("$E = mc^2$")
        expect(reply.locator("div.math.math-display")).to_contain_text("\\int_0^1 x^2")
        expect(reply.locator("p").first).to_contain_text("while lunch costs $5 and $10.")
        # Task list: disabled checkboxes named by their items
        expect(reply.get_by_role("checkbox", name="write the draft")).to_be_disabled()
        expect(reply.get_by_role("checkbox", name="pick a title")).to_be_checked()
        # The table scrolls in its own region, no word broken; the page itself is no wider than the phone
        wrapper = reply.get_by_role("group", name="Table")
        expect(wrapper).to_have_attribute("tabindex", "0")
        assert wrapper.evaluate("w => w.scrollWidth > w.clientWidth")
        assert wrapper.evaluate(BROKEN_WORDS) == []
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        assert axe_violations(page) == [], f"share page, {scheme}, phone"
