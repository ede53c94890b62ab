"""Keeping the list tidy in a real Chromium: a new chat left empty goes (a reload keeps it), Pin
puts a chat first, Archive takes it out of the dashboard (under Archived), Close offers Archive."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chats.models import Chat, Message
from chats.services import chat_create, workspace_create

from .pages import chat_action

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def user(make_user):
    return make_user("hedy", password="pw-123456")


@pytest.fixture
def workspace(user):
    workspace = workspace_create(name="Lab", owner=user)
    for title in ("Older notes", "Newer notes"):
        chat = chat_create(workspace=workspace, title=title, created_by=user)
        Message.objects.create(chat=chat, role="user", content=f"about {title}")
    return workspace


def test_a_new_chat_left_empty_is_not_listed_and_goes_at_the_next_new_chat(login, user, workspace, stack):
    _context, page = login(user)
    page.goto(f"{stack.url}/?workspace={workspace.id}")
    page.click(".new-chat button")
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]+/$"))
    left_id = page.url.rstrip("/").rsplit("/", 1)[1]
    expect(page.locator(f'.chat-link[data-chat-id="{left_id}"]')).to_have_count(1)  # its own page lists it

    page.go_back()  # left without typing: no tile for it
    page.reload()
    expect(page.locator(".tile")).to_have_count(2)
    page.click(".new-chat button")
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]+/$"))
    assert not Chat.objects.filter(pk=left_id).exists()

    page.fill("#composer-input", "Sketch the launch plan")
    page.click("#send")
    expect(page.locator("#chat-title")).to_have_text("Sketch the launch plan")
    page.goto(f"{stack.url}/?workspace={workspace.id}")
    expect(page.locator(".tile")).to_have_count(3)  # named by its first message, and kept


def test_pin_archive_and_close_from_the_chat_page(login, user, workspace, stack):
    older = Chat.objects.get(title="Older notes")
    _context, page = login(user)
    page.goto(f"{stack.url}/chats/{older.id}/")

    chat_action(page, "Pin")
    expect(page.locator("#pin-chat")).to_have_attribute("aria-pressed", "true")
    page.goto(f"{stack.url}/?workspace={workspace.id}")
    expect(page.locator(".tile").first).to_have_attribute("data-chat-id", str(older.id))
    expect(page.locator(".tile").first.locator(".tile-pinned")).to_have_text("pinned")

    page.goto(f"{stack.url}/chats/{older.id}/")
    chat_action(page, "#close-chat")
    expect(page.locator("#composer-status")).to_contain_text("Conversation closed.")
    page.get_by_role("button", name="Archive it too").click()
    expect(page.locator("#composer-status")).to_contain_text("Archived")
    expect(page.locator("#archive-chat")).to_have_text("Unarchive")

    page.goto(f"{stack.url}/?workspace={workspace.id}")
    expect(page.locator(f'.tile[data-chat-id="{older.id}"]')).to_have_count(0)
    page.get_by_role("link", name="Archived").click()
    expect(page.locator(f'.tile[data-chat-id="{older.id}"]')).to_have_count(1)
    expect(page.locator("h1")).to_contain_text("Archived")
