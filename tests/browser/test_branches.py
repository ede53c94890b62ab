"""Versions in a real Chromium: Regenerate keeps the old reply (‹ 1 / 2 ›), Edit makes a new
version of a question and answers it, and the arrows show another branch."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chats.models import Chat, Message
from chats.services import chat_create, workspace_create

from .pages import axe_violations, rendered_text, send, wait_streaming

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def user(make_user):
    return make_user("grace", password="pw-123456")


@pytest.fixture
def chat(user):
    return chat_create(workspace=workspace_create(name="Ops", owner=user), title="Versions", created_by=user)


def _ended(page):
    expect(page.locator("#stop")).to_be_hidden(timeout=20000)
    expect(page.locator("#send")).to_have_text("Send")


def _stopped_early(page):
    """A few words in, Stop: versions need text, not whole replies (the suite's time)."""
    wait_streaming(page, 3)
    page.click("#stop")
    _ended(page)


def _leaf(chat) -> Message:
    return Message.objects.get(pk=Chat.objects.get(pk=chat.pk).leaf_id)


def test_regenerate_and_edit_keep_versions_and_the_arrows_switch_between_them(login, user, chat, stack):
    _context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    send(page, "Name three moons")
    _stopped_early(page)
    first = _leaf(chat)
    reply = page.locator(".msg--assistant").last

    reply.get_by_role("button", name="Regenerate").click()
    _stopped_early(page)
    second = _leaf(chat)
    assert second.pk != first.pk
    expect(reply.locator(".msg-versions")).to_contain_text("2 / 2")

    reply.get_by_role("button", name="Previous version").click()  # the first reply again
    expect(page.locator(".msg--assistant .msg-versions")).to_contain_text("1 / 2")
    assert page.locator(".msg--assistant .msg-content").inner_text() == rendered_text(page, first.content)
    assert _leaf(chat).pk == first.pk

    question = page.locator(".msg--user").first
    question.get_by_role("button", name="Edit").click()
    question.get_by_label("Edit your message").fill("Name four moons")
    question.get_by_role("button", name="Save and send").click()
    _stopped_early(page)
    expect(page.locator(".msg")).to_have_count(2)  # the old question and its replies: another branch
    expect(page.locator(".msg--user .msg-content")).to_have_text("Name four moons")
    edited = _leaf(chat)
    assert page.locator(".msg--assistant .msg-content").inner_text() == rendered_text(page, edited.content)
    expect(page.locator(".msg--user .msg-versions")).to_contain_text("2 / 2")
    assert axe_violations(page) == []

    page.reload()  # the page and the server agree
    expect(page.locator(".msg--user .msg-versions")).to_contain_text("2 / 2")
    page.locator(".msg--user").get_by_role("button", name="Previous version").click()
    expect(page.locator(".msg--user .msg-content")).to_have_text("Name three moons")
    expect(page.locator(".msg--assistant .msg-versions")).to_contain_text("2 / 2")  # down to its newest reply
