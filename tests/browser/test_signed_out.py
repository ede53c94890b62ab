"""Signed out in another tab: the open chat stops reconnecting, says so, and its sign-in link
comes back to the same chat; a send says the same and keeps the text."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chats.services import chat_create, workspace_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def user(make_user):
    return make_user("katherine", password="pw-123456")


@pytest.fixture
def chat(user):
    return chat_create(workspace=workspace_create(name="Orbit", owner=user), title="Trajectories", created_by=user)


def test_a_page_signed_out_elsewhere_says_so_and_signs_in_back_to_the_same_chat(login, user, chat, stack):
    login.allowed += [r"status of 403", r"WebSocket connection to .* failed"]  # the refusals it must stop at
    context, home = login(user)
    page = context.new_page()
    page.goto(f"{stack.url}/chats/{chat.id}/")
    page.wait_for_timeout(500)  # its socket is open
    attempts = []
    page.on("websocket", lambda ws: attempts.append(ws.url))

    home.get_by_role("button", name="Log out").click()  # another tab

    notice = page.locator("#signed-out")
    expect(notice).to_contain_text("You were signed out", timeout=10000)
    link = notice.get_by_role("link", name="Sign in again")
    expect(link).to_have_attribute("href", f"/accounts/login/?next=%2Fchats%2F{chat.id}%2F")
    page.wait_for_timeout(3000)
    assert len(attempts) <= 1, attempts  # no retry storm: it stopped once it knew

    page.fill("#composer-input", "Still here?")
    page.click("#send")
    expect(page.locator("#composer-status")).to_contain_text("You were signed out; your message was not sent")
    expect(page.locator("#composer-input")).to_have_value("Still here?")

    link.click()
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-123456")
    page.click("button[type=submit]")
    page.wait_for_url(f"{stack.url}/chats/{chat.id}/")
    expect(page.locator("#signed-out")).to_have_count(0)
