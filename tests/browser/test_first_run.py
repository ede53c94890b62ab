"""First run in a real Chromium: an empty chat's suggestions (a click, or Enter on one, sends it
and they go), the empty dashboard's Start button, and the keyboard shortcut list ("?" outside a
text field, Esc closes it and the focus goes back); axe-core finds nothing serious on any of them,
light and dark, desktop and phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chats.models import Chat
from chats.services import chat_create, workspace_create
from mothership.suggestions import MARKDOWN_SAMPLE

from .pages import axe_violations, wait_streaming

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

DESKTOP, PHONE = {"width": 1280, "height": 860}, {"width": 390, "height": 844}


@pytest.fixture
def user(make_user):
    return make_user("first-run", password="pw-123456")


@pytest.fixture
def empty_workspace(user):
    return workspace_create(name="Fresh start", owner=user)


@pytest.fixture
def chat(user):
    return chat_create(workspace=workspace_create(name="Sandbox", owner=user), title="", created_by=user)


def _reply(page):
    return page.locator(".msg--assistant").last.locator(".msg-content")


def test_clicking_the_markdown_suggestion_streams_a_rendered_reply_and_the_suggestions_go(login, user, chat, stack):
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    cards = page.locator("#suggestions button.suggestion")
    expect(cards).to_have_count(4)
    expect(page.locator("#suggestions")).to_contain_text("Show a rendered reply")

    page.click("[data-suggestion=markdown]")
    # The message sent is the suggestion's, and its reply renders: a heading, a list, a table, code.
    expect(page.locator(".msg--user .msg-content").last).to_have_text("/echo " + MARKDOWN_SAMPLE)
    expect(_reply(page).locator("h2")).to_have_text("Release checklist", timeout=10000)
    expect(_reply(page).locator("table tr")).to_have_count(3, timeout=10000)
    expect(_reply(page).locator("pre code")).to_contain_text("def release(version):", timeout=10000)
    expect(_reply(page).locator("li")).to_have_count(3)
    # Gone at once, without a reload; the message box is empty and has the focus.
    expect(page.locator("#suggestions")).to_have_count(0)
    expect(page.locator("#composer-input")).to_have_value("")
    expect(page.locator("#composer-input")).to_be_focused()
    expect(page.locator("#stop")).to_be_hidden(timeout=15000)
    page.reload()
    expect(page.locator(".msg--assistant table")).to_have_count(1)
    expect(page.locator("#suggestions")).to_have_count(0)


def test_a_suggestion_is_a_button_the_keyboard_reaches_and_sends_with_a_visible_focus(login, user, chat, stack):
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    page.focus("#composer-input")
    page.keyboard.press("Shift+Tab")  # the last suggestion is just before the message box
    expect(page.locator("[data-suggestion=stop]")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    echo = page.locator("[data-suggestion=echo]")
    expect(echo).to_be_focused()
    outline = echo.evaluate("(b) => `${getComputedStyle(b).outlineStyle} ${getComputedStyle(b).outlineWidth}`")
    assert outline.startswith("solid") and not outline.endswith(" 0px"), outline
    page.keyboard.press("Enter")
    expect(_reply(page)).to_have_text("Hello! The local model answers /echo with exactly what follows it.", timeout=10000)
    expect(page.locator("#suggestions")).to_have_count(0)


def test_the_empty_dashboard_says_what_to_do_and_its_button_starts_a_chat(login, user, empty_workspace, stack):
    context, page = login(user)
    page.goto(f"{stack.url}/?workspace={empty_workspace.id}")
    empty = page.locator("#no-tiles")
    expect(empty.locator("h2")).to_have_text("No conversations yet")
    expect(empty).to_contain_text("Import conversations")
    empty.get_by_role("button", name="Start a conversation").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    chat = Chat.objects.get(workspace=empty_workspace)
    assert page.url.endswith(f"/chats/{chat.id}/")
    expect(page.locator("#suggestions button.suggestion")).to_have_count(4)  # and the new chat says what to try


def test_question_mark_opens_the_shortcut_list_esc_closes_it_and_the_focus_goes_back(login, user, empty_workspace, stack):
    context, page = login(user)
    page.goto(f"{stack.url}/?workspace={empty_workspace.id}")
    dialog = page.locator("dialog#shortcuts")
    expect(dialog).to_be_hidden()
    page.focus("#empty-new-chat")
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Shift")
    expect(page.locator("#shortcuts-close")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#empty-new-chat")).to_be_focused()

    # The visible button opens it too; Close closes it, back on the button.
    page.click("#shortcuts-open")
    expect(dialog).to_be_visible()
    page.click("#shortcuts-close")
    expect(dialog).to_be_hidden()
    expect(page.locator("#shortcuts-open")).to_be_focused()


def test_question_mark_in_a_text_field_is_typed_and_esc_in_the_list_does_not_stop_a_reply(login, user, chat, stack):
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    dialog = page.locator("dialog#shortcuts")
    page.focus("#composer-input")
    page.keyboard.type("Why?")
    expect(page.locator("#composer-input")).to_have_value("Why?")
    page.focus("#chat-search")
    page.keyboard.type("?")
    expect(page.locator("#chat-search")).to_have_value("?")
    expect(dialog).to_be_hidden()

    # While a reply streams, Esc closes the list only: the reply goes on.
    page.fill("#chat-search", "")
    page.focus("#composer-input")
    page.keyboard.press("Enter")
    wait_streaming(page)
    page.locator("#chat-title").click()  # out of the text field
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    words = len(_reply(page).inner_text().split())
    page.wait_for_timeout(500)
    expect(page.locator("#composer-status")).to_have_text("Streaming…")  # never "Stopping…"
    assert len(_reply(page).inner_text().split()) > words
    page.click("#stop")
    expect(page.locator("#stop")).to_be_hidden(timeout=10000)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violation_on_the_first_run_pages(login, user, chat, empty_workspace, stack, scheme):
    for viewport, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
        context, page = login(user, viewport=viewport)
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{stack.url}/chats/{chat.id}/")
        expect(page.locator("#suggestions button.suggestion").first).to_be_visible()
        assert axe_violations(page) == [], f"empty chat with suggestions, {scheme}, {name}"
        page.keyboard.press("?")
        expect(page.locator("dialog#shortcuts")).to_be_visible()
        assert axe_violations(page) == [], f"shortcut list, {scheme}, {name}"
        page.keyboard.press("Escape")
        page.goto(f"{stack.url}/?workspace={empty_workspace.id}")
        expect(page.locator("#no-tiles h2")).to_be_visible()
        assert axe_violations(page) == [], f"empty dashboard, {scheme}, {name}"
        page.keyboard.press("?")
        assert axe_violations(page) == [], f"shortcut list on the dashboard, {scheme}, {name}"
