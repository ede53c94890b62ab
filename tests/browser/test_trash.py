"""The trash in a real Chromium: Delete from a chat's page and from a dashboard tile, and Undo."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chats.models import Chat
from chats.services import chat_create, workspace_create

from .pages import chat_action

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def user(make_user):
    return make_user("ada", password="pw-123456")


@pytest.fixture
def chats(user):
    workspace = workspace_create(name="Research", owner=user)
    kept = chat_create(workspace=workspace, title="Moon landing sources", created_by=user)
    doomed = chat_create(workspace=workspace, title="Release notes draft", created_by=user)
    return workspace, kept, doomed


def _in_trash(chat) -> bool:
    return Chat.objects.get(pk=chat.pk).deleted_at is not None


def test_delete_from_the_chat_page_goes_to_the_dashboard_whose_undo_restores_it(login, user, chats, stack):
    workspace, kept, doomed = chats
    _context, page = login(user)
    page.goto(f"{stack.url}/chats/{doomed.id}/")

    chat_action(page, "#delete-chat")

    page.wait_for_url(f"{stack.url}/?workspace={workspace.id}")
    expect(page.locator("#undo-notice")).to_contain_text("moved to trash")
    expect(page.locator(f'.tile[data-chat-id="{doomed.id}"]')).to_have_count(0)
    expect(page.locator(f'.tile[data-chat-id="{kept.id}"]')).to_have_count(1)
    assert _in_trash(doomed)

    page.get_by_role("button", name="Undo").click()

    expect(page.locator("#undo-notice")).to_contain_text("Restored.")
    expect(page.locator(f'.tile[data-chat-id="{doomed.id}"]')).to_have_count(1)
    assert not _in_trash(doomed)


def test_delete_from_a_tile_by_keyboard_drops_it_from_every_open_page_and_undo_brings_it_back(login, user, chats, stack):
    workspace, kept, doomed = chats
    context, page = login(user)
    other = context.new_page()
    other.goto(f"{stack.url}/?workspace={workspace.id}")
    reading = context.new_page()  # another conversation's page, with the workspace's list beside it
    reading.goto(f"{stack.url}/chats/{kept.id}/")
    tile, entry = f'.tile[data-chat-id="{doomed.id}"]', f'.chat-link[data-chat-id="{doomed.id}"]'
    expect(other.locator(tile)).to_have_count(1)
    expect(reading.locator(entry)).to_have_count(1)
    page.wait_for_timeout(500)  # both dashboards have subscribed to the workspace's tiles

    button = page.get_by_role("button", name="Delete “Release notes draft” (move to trash)")
    button.focus()
    page.keyboard.press("Enter")

    expect(page.locator("#undo-notice")).to_contain_text("“Release notes draft” moved to trash.")
    expect(page.locator(tile)).to_have_count(0)
    expect(other.locator(tile)).to_have_count(0)  # pushed to the other tabs
    expect(reading.locator(entry)).to_have_count(0)
    assert _in_trash(doomed)

    page.keyboard.press("Enter")  # Undo has the focus

    expect(page.locator(tile)).to_have_count(1)
    expect(other.locator(tile)).to_have_count(1)
    expect(reading.locator(entry)).to_have_count(1)
    assert not _in_trash(doomed)
    expect(page.locator(f'.tile[data-chat-id="{kept.id}"]')).to_have_count(1)
