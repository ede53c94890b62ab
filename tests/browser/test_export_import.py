"""Import and export in a real Chromium: a ChatGPT export imported from the dashboard, then opened and exported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chats.models import Chat
from chats.services import workspace_create

from .pages import chat_action

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CHATGPT_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "chatgpt_conversations.json"


@pytest.fixture
def user(make_user):
    return make_user("ada", password="pw-123456")


@pytest.fixture
def workspace(user):
    return workspace_create(name="Research", owner=user)


def test_a_chatgpt_export_imported_from_the_dashboard_opens_as_chats_and_exports_again(login, user, workspace, stack):
    _context, page = login(user)
    login.allowed.append(r"status of 400")  # the refused file below: the browser logs the answer
    page.goto(f"{stack.url}/?workspace={workspace.id}")

    # a file that is not JSON is refused in words, and nothing is imported
    page.set_input_files("#import-file", files=[{"name": "notes.json", "mimeType": "application/json", "buffer": b"{oops"}])
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-status")).to_contain_text("Not imported: The file is not JSON")
    assert not Chat.objects.filter(workspace=workspace).exists()

    # the ChatGPT export: one tile per conversation
    page.set_input_files("#import-file", str(CHATGPT_FIXTURE))
    page.get_by_role("button", name="Import", exact=True).click()

    expect(page.locator("#import-status")).to_contain_text("Imported 2 conversations.")
    expect(page.locator(".tile", has_text="Weekend in Lisbon")).to_have_count(1)
    expect(page.locator(".tile", has_text="Explain recursion in one line.")).to_have_count(1)
    assert Chat.objects.filter(workspace=workspace).count() == 2

    page.locator(".tile", has_text="Weekend in Lisbon").get_by_role("link").first.click()

    expect(page.locator("#chat-title")).to_have_text("Weekend in Lisbon")
    expect(page.locator("#transcript")).to_contain_text("That is the Belém Tower.")
    with page.expect_download() as download:
        chat_action(page, "#chat-export a[href$=json]")
    assert download.value.suggested_filename == "Weekend in Lisbon.json"
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["format"] == "mothership.chat" and len(exported["messages"]) == 8
