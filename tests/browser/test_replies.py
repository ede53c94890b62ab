"""Under each reply in a real Chromium: its model, tokens, cost and duration; Copy; and recovery in
one click: Continue a stopped reply (one message), Regenerate the last one, Retry a failed one."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chats.models import Chat, Message
from chats.services import chat_create, workspace_create
from streams.models import Stream
from streams.services import stream_finalize, stream_start

from .pages import rendered_text, send, wait_streaming

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

FIGURES = re.compile(r"^Local · [\d,]+ in · [\d,]+ cache read · [\d,]+ cache write · [\d,]+ out · (< )?\$[\d.]+ · \d+\.\d s$")


@pytest.fixture
def user(make_user):
    return make_user("linus", password="pw-123456")


@pytest.fixture
def chat(user):
    return chat_create(workspace=workspace_create(name="Ops", owner=user), title="Recovery")


def _last(page):
    return page.locator(".msg--assistant").last


def _ended(page):
    expect(page.locator("#stop")).to_be_hidden(timeout=20000)
    expect(page.locator("#send")).to_have_text("Send")


def test_each_reply_shows_its_figures_and_copy_puts_its_markdown_on_the_clipboard(login, user, chat, stack):
    context, page = login(user)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    send(page, "/echo Some **bold** words")
    _ended(page)
    meta = _last(page).locator(".msg-meta")
    expect(meta).to_have_text(FIGURES)
    message = Message.objects.get(pk=Stream.objects.get(chat=chat).assistant_message_id)
    assert f" {message.output_tokens} out" in meta.inner_text()
    shown = meta.inner_text()

    _last(page).locator(".msg-copy").click()
    expect(_last(page).locator(".msg-copy")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == "Some **bold** words"

    page.reload()
    expect(_last(page).locator(".msg-meta")).to_have_text(shown)  # the same after a reload


def test_a_stopped_reply_continues_as_one_message_and_the_last_reply_regenerates(login, user, chat, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    send(page, "Write a long answer")
    wait_streaming(page, 10)
    page.click("#stop")
    expect(_last(page).locator(".msg-status")).to_have_text("cancelled", timeout=5000)
    message_id = _last(page).get_attribute("data-message-id")
    kept = Message.objects.get(pk=message_id).content
    assert kept

    _last(page).get_by_role("button", name="Continue").click()
    expect(page.locator("#stop")).to_be_visible()
    _ended(page)
    message = Message.objects.get(pk=message_id)
    assert message.status == "complete" and message.content.startswith(kept) and len(message.content) > len(kept)
    assert Message.objects.filter(chat=chat).count() == 2  # one question, one reply
    expect(page.locator(".msg")).to_have_count(2)
    assert _last(page).locator(".msg-content").inner_text() == rendered_text(page, message.content)
    expect(_last(page).get_by_role("button", name="Continue")).to_have_count(0)  # complete: nothing to continue

    _last(page).get_by_role("button", name="Regenerate").click()
    expect(page.locator("#stop")).to_be_visible()
    _ended(page)
    regenerated = Message.objects.get(pk=Chat.objects.get(pk=chat.pk).leaf_id)
    # Started over: a whole new reply to the question, a new version beside the kept one (the
    # offline model answers a question asked again differently, as a sampling model does).
    assert regenerated.pk != message.pk and Message.objects.get(pk=message_id).content == message.content
    expect(_last(page).locator(".msg-versions")).to_contain_text("2 / 2")
    assert regenerated.status == "complete" and regenerated.content != message.content
    assert not regenerated.content.startswith(kept)
    assert regenerated.stream_id == Stream.objects.filter(chat=chat).order_by("-created_at").first().pk
    assert Stream.objects.filter(chat=chat).count() == 3
    expect(page.locator(".msg")).to_have_count(2)
    assert _last(page).locator(".msg-content").inner_text() == rendered_text(page, regenerated.content)
    expect(_last(page).locator(".msg-meta")).to_have_text(FIGURES)


def test_continue_is_offered_only_while_the_chats_model_can_go_on_from_kept_text(login, user, chat, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    send(page, "Write a long answer")
    wait_streaming(page, 10)
    page.click("#stop")
    expect(_last(page).locator(".msg-status")).to_have_text("cancelled", timeout=5000)
    expect(_last(page).get_by_role("button", name="Continue")).to_have_count(1)

    page.select_option("#chat-model", "local-terse")
    expect(page.locator("#composer-status")).to_have_text("Next replies use Local (terse).")
    expect(_last(page).get_by_role("button", name="Continue")).to_have_count(0)
    expect(_last(page).get_by_role("button", name="Regenerate")).to_have_count(1)
    page.reload()
    expect(_last(page).get_by_role("button", name="Regenerate")).to_have_count(1)
    expect(_last(page).get_by_role("button", name="Continue")).to_have_count(0)  # the page and a reload agree

    page.select_option("#chat-model", "mothership-local-1")
    expect(_last(page).get_by_role("button", name="Continue")).to_have_count(1)


def test_a_failed_reply_retries_in_one_click(login, user, chat, stack):
    turn = stream_start(chat=chat, content="/echo worked the second time")
    stream_finalize(stream=turn.stream, status=Stream.Status.FAILED, reason="provider_unavailable", text="", last_seq=0)
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    expect(_last(page).locator(".msg-status")).to_have_text("failed")
    expect(_last(page).get_by_role("button", name="Regenerate")).to_have_count(0)

    _last(page).get_by_role("button", name="Retry").click()
    _ended(page)
    expect(_last(page).locator(".msg-content")).to_have_text("worked the second time")
    expect(_last(page).locator(".msg-status")).to_have_count(0)
    assert Message.objects.get(pk=turn.assistant_message.pk).status == "complete"
