"""Search in a real Chromium: the dashboard's box (Ctrl+K) and the chat page's list find message
text on the server, and a result opens its chat with the message in view."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chats.models import Message
from chats.services import chat_create, workspace_create
from tests import factories

from .pages import axe_violations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

FILLER = "A paragraph about the weather, the trains and the price of bread, long enough to take some room. " * 3


@pytest.fixture
def user(make_user):
    return make_user("ada", password="pw-123456")


@pytest.fixture
def notes(user):
    """A long conversation (one branch) whose sixth message speaks of a quokka, and a chat named for one."""
    workspace = workspace_create(name="Research", owner=user)
    chat = chat_create(workspace=workspace, title="Field notes", created_by=user)
    previous, found = None, None
    for n in range(40):
        role = Message.Role.USER if n % 2 == 0 else Message.Role.ASSISTANT
        content = "We saw a <quokka> near the river at dawn." if n == 5 else f"{n}. {FILLER}"
        previous = factories.MessageFactory(chat=chat, role=role, content=content, parent=previous)
        found = previous if n == 5 else found
    chat.leaf_id = previous.id
    chat.save(update_fields=["leaf_id"])
    named = chat_create(workspace=workspace, title="Quokka habitats", created_by=user)
    return workspace, chat, found, named


def _lands_on_the_message(page, stack, chat, message) -> None:
    page.wait_for_url(f"{stack.url}/chats/{chat.id}/?message={message.id}")
    shown = page.locator(f'#transcript [data-message-id="{message.id}"]')
    expect(shown).to_be_in_viewport()
    expect(shown).to_have_class(re.compile(r"\bmsg--found\b"))
    expect(shown).to_be_focused()


def test_the_dashboards_search_and_the_chat_lists_open_the_chat_at_the_message(login, user, notes, stack):
    workspace, chat, found, named = notes
    _context, page = login(user)
    page.goto(f"{stack.url}/?workspace={workspace.id}")

    # The dashboard: Ctrl+K goes to the search box; the title and the message are found
    page.keyboard.press("Control+k")
    box = page.get_by_role("searchbox", name="Search")
    expect(box).to_be_focused()
    page.keyboard.type("quokka")
    results = page.locator("#workspace-search-results a")
    expect(results).to_have_count(2)
    expect(page.locator("#workspace-search-status")).to_have_text("2 results")
    expect(results.first).to_have_attribute("href", f"/chats/{named.id}/")  # the title ranks first
    hit = results.nth(1)
    expect(hit).to_have_attribute("href", f"/chats/{chat.id}/?message={found.id}")
    expect(hit.locator("mark")).to_have_text("quokka")
    expect(hit.locator(".search-result-snippet")).to_contain_text("We saw a <quokka> near the river")  # text, not markup
    assert axe_violations(page) == [], "dashboard with search results"

    # The keyboard reaches the results; Enter on one opens the chat at the message
    page.keyboard.press("ArrowDown")
    expect(results.first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(hit).to_be_focused()
    page.keyboard.press("Enter")
    _lands_on_the_message(page, stack, chat, found)

    # The chat page's list: titles filter at once, message text comes from the server below them
    page.goto(f"{stack.url}/chats/{named.id}/")
    page.locator("#chat-title").click()
    page.keyboard.press("/")
    expect(page.locator("#chat-search")).to_be_focused()
    page.keyboard.type("river dawn")
    expect(page.locator("#chat-links .chat-link:visible")).to_have_count(0)
    from_server = page.locator("#chat-search-results a")
    expect(from_server).to_have_count(1)
    expect(page.locator("#chat-search-status")).to_have_text("1 message matches")
    assert axe_violations(page) == [], "chat page with search results"
    from_server.click()
    _lands_on_the_message(page, stack, chat, found)
