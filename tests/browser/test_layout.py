"""The chat page's layout in a real Chromium: the workspace's conversations beside the
conversation (live state dots, the current one marked, a search box on "/"), the warming panel
in a side section that folds and remembers it, and a phone layout that keeps all of it reachable."""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from chats.services import chat_create, workspace_create

from .pages import send, set_visibility, wait_streaming

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def user(make_user):
    return make_user("barbara", password="pw-123456")


@pytest.fixture
def chats(user):
    workspace = workspace_create(name="Lab", owner=user)
    return [
        chat_create(workspace=workspace, title=title, created_by=user) for title in ("Alpha notes", "Bravo plan", "Charlie log")
    ]


def _link(page, chat):
    return page.locator(f'.chat-link[data-chat-id="{chat.id}"]')


def test_the_conversation_list_shows_live_states_marks_this_one_and_finds_one_on_slash(login, user, chats, stack):
    alpha, bravo, charlie = chats
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{alpha.id}/")
    expect(page.locator("#chat-links .chat-link")).to_have_count(3)
    expect(_link(page, alpha).locator("a")).to_have_attribute("aria-current", "page")
    expect(page.locator("#chat-links .chat-link").first).to_have_attribute("data-chat-id", str(charlie.id))  # newest first

    other = context.new_page()
    other.goto(f"{stack.url}/chats/{bravo.id}/")
    send(other, "Write a long answer")
    wait_streaming(other, 3)
    expect(_link(page, bravo)).to_have_attribute("data-state", "streaming", timeout=5000)  # live, no reload
    expect(_link(page, bravo).locator(".chat-link-state")).to_have_text("streaming")
    other.click("#stop")
    expect(_link(page, bravo)).to_have_attribute("data-state", "cancelled", timeout=5000)

    page.locator("#chat-title").click()
    page.keyboard.press("/")
    expect(page.locator("#chat-search")).to_be_focused()
    page.keyboard.type("brav")
    expect(page.locator("#chat-links .chat-link:visible")).to_have_count(1)
    page.keyboard.type("xyz")
    expect(page.locator("#chat-search-empty")).to_be_visible()
    page.fill("#chat-search", "bravo")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{stack.url}/chats/{bravo.id}/")
    expect(_link(page, bravo).locator("a")).to_have_attribute("aria-current", "page")

    page.keyboard.press("Control+k")
    expect(page.locator("#chat-search")).to_be_focused()


def test_a_reply_that_ends_unseen_marks_its_conversation_in_the_list_until_it_is_opened(login, user, chats, stack):
    alpha, bravo, _ = chats
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{alpha.id}/")
    badge = _link(page, bravo).locator(".chat-link-unread")
    other = context.new_page()
    other.goto(f"{stack.url}/chats/{bravo.id}/")  # opened once: a reply after this is new
    expect(badge).to_be_hidden()

    # When a reply streams in bravo while its tab is hidden, and ends
    send(other, "Write a long answer")
    wait_streaming(other, 3)
    set_visibility(other, "hidden")
    expect(_link(page, bravo)).to_have_attribute("data-state", "streaming", timeout=5000)

    # Then alpha's page marks bravo live as the reply ends, and the server says so after a reload
    expect(badge).to_be_visible(timeout=20000)
    expect(badge).to_have_text("new")
    other.close()
    page.reload()
    expect(badge).to_be_visible()
    expect(_link(page, alpha).locator(".chat-link-unread")).to_be_hidden()  # the open one never is

    # And once bravo is opened it is no longer new, here or back on alpha
    _link(page, bravo).locator("a").click()
    page.wait_for_url(f"{stack.url}/chats/{bravo.id}/")
    expect(_link(page, bravo).locator(".chat-link-unread")).to_be_hidden()
    page.goto(f"{stack.url}/chats/{alpha.id}/")
    expect(badge).to_be_hidden()


def test_the_warming_panel_is_folded_until_opened_and_stays_as_it_was_left(login, user, chats, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chats[0].id}/")
    expect(page.locator("#warming-enabled")).to_be_hidden()  # folded by default
    expect(page.locator("#warming-summary")).to_have_text("Off")  # folded, it still says what it does
    page.locator("#warming-section > summary").click()
    expect(page.locator("#warming-enabled")).to_be_visible()
    # Its figures are label / value pairs, each value on its label's row.
    rows = page.evaluate(
        """() => [...document.querySelectorAll('.warming-stats dt')].map(
             (dt) => Math.abs(dt.getBoundingClientRect().top - dt.nextElementSibling.getBoundingClientRect().top) < 4)"""
    )
    assert rows and all(rows), rows
    page.reload()
    expect(page.locator("#warming-section")).to_have_attribute("open", "")  # as it was left
    page.locator("#warming-section > summary").click()
    expect(page.locator("#warming-enabled")).to_be_hidden()


def test_on_a_phone_every_part_of_the_chat_page_is_reachable(login, user, chats, stack):
    _, page = login(user, viewport={"width": 390, "height": 844})
    page.goto(f"{stack.url}/chats/{chats[0].id}/")
    expect(page.locator("#chat-nav")).not_to_have_attribute("open", "")  # folded out of the way
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways ({width}px)"
    expect(page.locator("#composer-input")).to_be_visible()
    page.locator("#chat-nav > summary").click()
    expect(_link(page, chats[1])).to_be_visible()
    page.locator("#warming-section > summary").click()
    page.locator("#warming-enabled").scroll_into_view_if_needed()
    expect(page.locator("#warming-enabled")).to_be_visible()
    send(page, "/echo hello from a phone")
    expect(page.locator(".msg--assistant").last.locator(".msg-content")).to_have_text("hello from a phone", timeout=10000)


AT_END = "() => { const p = document.scrollingElement; return p.scrollTop + innerHeight >= p.scrollHeight - 80; }"


def _reaches_the_end(page) -> bool:
    try:
        page.wait_for_function(AT_END, timeout=5000)  # a frame or two after the last growth
    except PlaywrightTimeoutError:
        return False
    return True


def test_a_streaming_reply_stays_in_view_until_the_reader_scrolls_up(login, user, chats, stack):
    _, page = login(user, viewport={"width": 1000, "height": 600})
    page.goto(f"{stack.url}/chats/{chats[0].id}/")
    long = "\n\n".join(f"Paragraph {n} of a long answer." for n in range(1, 41))
    send(page, "/echo " + long)
    expect(page.locator(".msg--assistant").last.locator(".msg-content")).to_contain_text("Paragraph 40", timeout=15000)
    assert page.evaluate("() => document.scrollingElement.scrollHeight > 3 * innerHeight")  # it did grow past the screen
    assert _reaches_the_end(page), "the page did not follow the reply as it grew"

    page.reload()
    expect(page.locator(".msg--assistant .msg-content p").first).to_be_attached()
    assert _reaches_the_end(page), "the page did not open at the newest message"

    # When the next reply streams (its own bubble has words) and the reader goes back up to read
    page.add_init_script("window.__followTrace = []")  # followEnd notes why the page moved
    page.reload()
    replies = page.locator(".msg--assistant")
    expect(replies).to_have_count(1)
    send(page, "Write a long answer")  # the local model: 400 tokens at 60 a second
    expect(replies).to_have_count(2)
    expect(page.locator("#stop")).to_be_visible()
    wait_streaming(page, 5)
    page.mouse.move(500, 200)
    page.mouse.wheel(0, -2000)
    page.wait_for_function("() => document.scrollingElement.scrollTop < document.scrollingElement.scrollHeight - 2 * innerHeight")
    top = page.evaluate("() => document.scrollingElement.scrollTop")

    # Then the page stays where they are while the reply grows to its end
    expect(page.locator("#stop")).to_be_hidden(timeout=20000)
    trace = "\n".join(page.evaluate("() => window.__followTrace || []")[-40:])
    assert abs(page.evaluate("() => document.scrollingElement.scrollTop") - top) < 5, (
        f"the page pulled the reader back down:\n{trace}"
    )


def test_the_first_tab_reaches_a_skip_link_to_the_message_box(login, user, chats, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chats[0].id}/")
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()  # shown once it has the focus
    page.keyboard.press("Enter")
    page.keyboard.type("typed without tabbing through the list")
    expect(page.locator("#composer-input")).to_have_value("typed without tabbing through the list")
