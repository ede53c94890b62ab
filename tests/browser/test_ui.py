"""The UI in a real Chromium: streaming, Stop, two tabs, a killed worker's tile, warming, Close."""

from __future__ import annotations

import os
import re
import time

import pytest
from playwright.sync_api import expect

from chats.models import Message
from chats.services import chat_create, membership_add, workspace_create
from streams.models import Stream
from tests.support.warming import wait_until_warmed_after, warming_witness
from warming.models import WarmingSchedule

from .conftest import SCREENSHOTS
from .pages import assistant_text as _assistant_text
from .pages import axe_violations, chat_action, rendered_text, set_visibility
from .pages import send as _send
from .pages import until as _until
from .pages import wait_streaming as _wait_streaming

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def user(make_user):
    return make_user("ada", password="pw-123456")


@pytest.fixture
def chat(user):
    workspace = workspace_create(name="Research", owner=user)
    chat_create(workspace=workspace, title="Moon landing sources")
    return chat_create(workspace=workspace, title="Release notes draft")


@pytest.mark.screenshots
def test_a_reply_streams_in_two_tabs_and_stop_keeps_the_partial_text(login, user, chat, stack):
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    second = context.new_page()
    second.goto(f"{stack.url}/chats/{chat.id}/")
    expect(page.locator("#stop")).to_be_hidden()

    _send(page, "Tell me about the mothership")
    _wait_streaming(page, 5)
    first_len = len(_assistant_text(page))
    _until(
        page, f"() => document.querySelector('.msg--assistant:last-child .msg-content').textContent.length > {first_len}"
    )  # it grows
    expect(page.locator("#send")).to_have_text("Stop and send")  # this conversation's own turn is running
    _wait_streaming(second, 15)  # the second tab sees the same stream

    page.click("#stop")

    expect(page.locator(".msg--assistant").last.locator(".msg-status")).to_have_text("cancelled", timeout=5000)
    expect(page.locator("#send")).to_have_text("Send")
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#composer-status")).to_have_text("Stopped.")
    stream = Stream.objects.get(chat=chat)
    message = Message.objects.get(pk=stream.assistant_message_id)
    assert stream.status == "cancelled" and 0 < len(message.content) < 400 * 12
    assert _assistant_text(page) == rendered_text(page, message.content)  # what was shown is what was kept
    expect(second.locator(".msg--assistant").last.locator(".msg-status")).to_have_text("cancelled", timeout=5000)
    assert _assistant_text(second) == rendered_text(second, message.content)

    page.reload()  # the server-rendered transcript says the same
    assert _assistant_text(page) == rendered_text(page, message.content)
    expect(page.locator(".msg--assistant").last).to_contain_text("cancelled")
    if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "chat.png"))  # what the screen shows (its side columns and composer stick)


@pytest.mark.screenshots
def test_a_killed_workers_tile_turns_from_yellow_on_its_own(login, user, chat, stack):
    context, home = login(user)
    tile = home.locator(f'.tile[data-chat-id="{chat.id}"]')
    expect(tile).to_have_attribute("data-state", "idle")
    page = context.new_page()
    page.goto(f"{stack.url}/chats/{chat.id}/")
    _send(page, "This one will crash")
    expect(tile).to_have_attribute("data-state", "streaming", timeout=5000)  # live, no reload
    _wait_streaming(page, 5)
    if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        home.screenshot(path=str(SCREENSHOTS / "home.png"), full_page=True)

    stack.worker.kill9()  # the only worker: no sweep runs until it is back
    killed = time.monotonic()
    try:
        # The lock expires (TTL 3 s) and the page's liveness re-read shows it: no sweep, no reload.
        expect(tile).to_have_attribute("data-state", "interrupted", timeout=6000)
        assert time.monotonic() - killed <= 3 + 1.5 + 1
        expect(tile.locator(".tile-state")).to_have_text("interrupted — partial reply kept")
    finally:
        stack.restart_worker()
    # Back, the worker runs the sweeper: the reply is salvaged and the open chat page is told.
    expect(page.locator(".msg--assistant").last.locator(".msg-status")).to_have_text("interrupted", timeout=10000)
    stream = Stream.objects.get(chat=chat)
    kept = Message.objects.get(pk=stream.assistant_message_id).content
    assert stream.status == "interrupted" and _assistant_text(page) == rendered_text(page, kept)


def test_warming_counts_down_resets_after_each_warm_and_close_stops_it(login, user, chat, stack, settings):
    settings.MOTHERSHIP_WARMING_MIN_INTERVAL = 1  # this process makes the witness's 1 s schedule
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    panel = page.locator("#warming")
    countdown = page.locator("#warming-countdown")
    expect(countdown).to_have_text("Off")  # off by default
    expect(page.locator("#warming-enabled")).not_to_be_checked()
    _send(page, "Something to keep warm")
    _wait_streaming(page, 3)
    page.click("#stop")
    expect(page.locator("#send")).to_be_enabled(timeout=5000)

    page.locator("#warming-section > summary").click()  # folded by default
    page.fill("#warming-interval", "3")
    page.locator("#warming-interval").dispatch_event("change")
    page.check("#warming-enabled")
    expect(panel).to_have_attribute("data-enabled", "true")
    expect(countdown).to_have_text(re.compile(r"Next warm in 0:0[1-3]"))

    seen = []
    deadline = time.monotonic() + 12
    while len(seen) < 3 and time.monotonic() < deadline:  # three different warms
        next_at, text, now_ms = countdown.evaluate("e => [e.dataset.nextWarmAt, e.textContent, Date.now()]")
        assert next_at, f"warming is on but the countdown has no next-warm time: {text!r}"
        shown = re.fullmatch(r"Next warm in (\d+):(\d\d)", text)
        if shown:  # the time left, as of the last second's tick: never a past time
            left, seconds = (int(next_at) - now_ms) / 1000, int(shown[1]) * 60 + int(shown[2])
            assert left > -1 and left - 0.05 <= seconds <= left + 2, (text, left)
        else:  # "waiting…" only once that time has come (the warm is on its way)
            assert text == "Next warm waiting…" and int(next_at) <= now_ms + 50, (text, int(next_at) - now_ms)
        if next_at not in seen:
            seen.append(next_at)
        time.sleep(0.25)
    assert len(seen) >= 3, seen
    assert all(int(b) > int(a) for a, b in zip(seen, seen[1:]))  # each warm moved it to a future time
    expect(page.locator('[data-field="warmCount"]')).not_to_have_text("0")
    expect(page.locator('[data-field="lastCachePct"]')).to_have_text("100.0 %")

    witness = warming_witness(workspace_id=chat.workspace_id, interval=1)
    due = WarmingSchedule.objects.get(chat=chat).next_warm_at.timestamp()
    chat_action(page, "#close-chat")
    expect(countdown).to_have_text("Off", timeout=5000)
    expect(page.locator("#warming-status")).to_contain_text("closed")
    warms = WarmingSchedule.objects.get(chat=chat).warm_count
    wait_until_warmed_after(witness, due + 0.2)  # beat went on warming past the time this chat was due
    assert WarmingSchedule.objects.get(chat=chat).warm_count == warms
    expect(countdown).to_have_text("Off")


def test_the_dashboard_reads_on_a_phone_and_creates_chats(login, user, chat, stack):
    context, page = login(user, viewport={"width": 375, "height": 740})
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    page.fill("#new-chat-title", "From my phone")
    page.click(".new-chat button")
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]+/$"))
    expect(page.locator("h1")).to_have_text("From my phone")
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    # Keyboard reachable: Tab walks every control, each with a name, the composer and then Send among them.
    focused = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused.append(
            page.evaluate(
                """() => {
                  const e = document.activeElement;
                  const label = e.labels && e.labels.length ? e.labels[0].textContent : "";
                  return {id: e.id, tag: e.tagName, name: (e.getAttribute("aria-label") || label || e.textContent || "").trim()};
                }"""
            )
        )
    ids = [f["id"] for f in focused]
    assert "composer-input" in ids and "send" in ids and ids.index("composer-input") < ids.index("send"), focused
    assert all(f["tag"] != "BODY" and f["name"] for f in focused[: ids.index("send") + 1]), focused
    assert focused[ids.index("composer-input")]["name"] == "Message"


def test_a_network_drop_mid_reply_resumes_with_nothing_lost_or_doubled(login, user, chat, stack):
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    _send(page, "Keep going through the outage")
    _wait_streaming(page, 10)

    login.allowed.append(r"WebSocket connection to .* failed")  # the browser logs its retries while the server is down
    stack.restart_server()  # every socket drops; the page reconnects with back-off and resumes

    _assert_reply_completes_whole(page, chat)


def _assert_reply_completes_whole(page, chat) -> None:
    """The chat's one reply completes, and the page shows exactly its saved text: no gap, no duplicate."""
    stream = Stream.objects.get(chat=chat)
    deadline = time.monotonic() + 30
    while Stream.objects.get(pk=stream.pk).is_live:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    expect(page.locator("#send")).to_be_enabled(timeout=15000)
    message = Message.objects.get(pk=stream.assistant_message_id)
    assert message.status == "complete"
    assert _assistant_text(page) == rendered_text(page, message.content)


# Every socket the page opens, and when each opened: the page's own timings, shortened.
SOCKET_WATCH = """
globalThis.__socketTiming = { pingEveryMs: 1000, pongWithinMs: 1000, openWithinMs: 1500 };
globalThis.__sockets = [];
const Native = globalThis.WebSocket;
globalThis.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    const record = { created: performance.now(), opened: null };
    globalThis.__sockets.push(record);
    this.addEventListener("open", () => { record.opened = performance.now(); });
  }
};
"""


def test_a_hung_server_is_noticed_by_the_page_which_reconnects_and_resumes(login, user, chat, stack):
    """The server process stops (SIGSTOP: its connections stay open, it answers nothing). The page's
    ping goes unanswered, it opens a new socket, abandons each that does not open in time, and once
    the server answers again it resumes the reply with nothing lost or doubled."""
    import signal

    context, page = login(user)
    context.add_init_script(SOCKET_WATCH)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    _until(page, "() => globalThis.__sockets.length === 1 && globalThis.__sockets[0].opened !== null")
    _send(page, "Keep going while the server hangs")
    _wait_streaming(page, 10)

    login.allowed.append(r"WebSocket .*(failed|closed before the connection is established)")
    stopped = page.evaluate("() => performance.now()")
    os.kill(stack.server.pid, signal.SIGSTOP)
    try:
        # A second socket within a ping and a pong's wait (1 s each, checked every half second)...
        _until(page, "() => globalThis.__sockets.length >= 2", timeout=6)
        noticed = page.evaluate("() => globalThis.__sockets[1].created") - stopped
        print(f"hung server: a new socket {noticed:.0f} ms after the stop")
        assert noticed < 5000, noticed  # (3.0–3.1 s measured: a second of silence, a second for the pong, half-second checks)
        # ...and a third once the second did not open within 1.5 s (the stopped process's backlog).
        _until(page, "() => globalThis.__sockets.length >= 3", timeout=6)
        sockets = page.evaluate("() => globalThis.__sockets")
        assert sockets[1]["opened"] is None and 1400 <= sockets[2]["created"] - sockets[1]["created"] < 3500, sockets
    finally:
        os.kill(stack.server.pid, signal.SIGCONT)
    _until(page, "() => globalThis.__sockets.some((s, i) => i > 0 && s.opened !== null)", timeout=15)

    _assert_reply_completes_whole(page, chat)


def test_five_hundred_chats_show_a_page_of_tiles_that_stays_live_and_earlier_messages_load(login, user, chat, stack):
    from datetime import timedelta

    from django.utils import timezone

    from chats.models import Chat

    Chat.objects.bulk_create([Chat(workspace=chat.workspace, title=f"Bulk chat {i}") for i in range(500)])
    start = timezone.now() - timedelta(hours=1)
    history = Message.objects.bulk_create(Message(chat=chat, role="user", content=f"old message {i}") for i in range(150))
    for i, message in enumerate(history):
        message.created_at = start + timedelta(seconds=i)
    Message.objects.bulk_update(history, ["created_at"])

    context, home = login(user)
    expect(home.locator(".tile")).to_have_count(100)  # the newest page; the rest a click away
    older = context.new_page()
    older.goto(stack.url + "/?workspace=" + str(chat.workspace_id))
    older.click("#older-tiles")
    expect(older.locator(".tile")).to_have_count(100)
    expect(older.get_by_text("Newest conversations")).to_be_visible()

    page = context.new_page()
    page.goto(f"{stack.url}/chats/{chat.id}/")
    expect(page.locator("#transcript .msg")).to_have_count(100)
    expect(page.locator("#transcript .msg").first).to_have_text(re.compile("old message 50"))
    page.click("#earlier-messages")
    expect(page.locator("#transcript .msg")).to_have_count(150)
    expect(page.locator("#transcript .msg").first).to_have_text(re.compile("old message 0$"))
    expect(page.locator("#earlier-messages")).to_have_count(0)  # nothing earlier left

    _send(page, "A reply while 500 tiles are in the workspace")
    tile = home.locator(f'.tile[data-chat-id="{chat.id}"]')
    expect(tile).to_have_attribute("data-state", "streaming", timeout=5000)  # a chat from an older page comes first
    page.click("#stop")
    expect(tile).to_have_attribute("data-state", "cancelled", timeout=5000)
    expect(tile).to_have_count(1)  # updates and re-reads never duplicate a tile


def test_the_model_picker_changes_the_model_of_the_next_reply(login, user, chat, stack, settings):
    settings.LLM_MODELS = [
        {"id": "mothership-local-1", "provider": "local", "model": "mothership-local-1", "label": "Local"},
        {"id": "local-terse", "provider": "local", "model": "mothership-local-1", "label": "Local (terse)"},
    ]  # this process reads the chat's model as the server does
    context, _home = login(user)
    page = context.new_page()
    page.goto(f"{stack.url}/chats/{chat.id}/")
    expect(page.locator("#chat-model option")).to_have_count(2)
    page.select_option("#chat-model", "local-terse")
    expect(page.locator("#composer-status")).to_have_text("Next replies use Local (terse).")
    chat.refresh_from_db()
    assert chat.model_id == "local-terse"
    _send(page, "Which model answers?")
    _until(page, "() => document.querySelector('.msg--assistant:last-child')?.classList.length > 0")
    deadline = time.monotonic() + 10
    while not Stream.objects.filter(chat=chat).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Stream.objects.filter(chat=chat).latest("created_at").model_id == "local-terse"


def test_stop_and_send_stops_the_running_reply_and_sends_the_new_message(login, user, chat, stack):
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    _send(page, "A long answer, please")
    _wait_streaming(page, 5)
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#send")).to_have_text("Stop and send")
    _send(page, "Never mind, something else")
    _until(page, "() => document.querySelectorAll('.msg--assistant').length === 2")
    expect(page.locator(".msg--assistant").first).to_have_class(re.compile("msg--cancelled"), timeout=5000)
    _wait_streaming(page, 3)  # the new reply streams into the second bubble
    first, second = Stream.objects.filter(chat=chat).order_by("created_at")
    assert first.status == "cancelled" and Message.objects.get(pk=first.assistant_message_id).content
    assert Message.objects.filter(chat=chat, role="user").count() == 2
    page.click("#stop")
    expect(page.locator("#stop")).to_be_hidden(timeout=5000)


def test_stop_is_offered_to_the_turns_sender_and_the_owner_and_not_to_another_member(login, user, chat, stack, make_user):
    """Before, every member's page armed Stop (and "Stop and send") for every member's turn."""
    sender, other = make_user("frank", password="pw-123456"), make_user("carol", password="pw-123456")
    for member in (sender, other):
        membership_add(workspace=chat.workspace, user=member)
    pages = {}
    for name, person in (("sender", sender), ("other", other), ("owner", user)):
        _context, pages[name] = login(person)
        pages[name].goto(f"{stack.url}/chats/{chat.id}/")

    _send(pages["sender"], "A long answer, please")
    for page in pages.values():
        _wait_streaming(page, 5)

    # The sender and the workspace's owner may stop it; another member sees why not.
    for name in ("sender", "owner"):
        expect(pages[name].locator("#stop")).to_be_enabled()
        expect(pages[name].locator("#send")).to_have_text("Stop and send")
    refused = pages["other"].locator("#stop")
    expect(refused).to_be_visible()
    expect(refused).to_be_disabled()
    expect(refused).to_have_attribute(
        "title", re.compile("Only the member who sent this message, the chat's creator or an owner")
    )
    expect(pages["other"].locator("#send")).to_have_text("Send")
    pages["other"].reload()  # the page as the server renders it mid-reply says the same
    _wait_streaming(pages["other"], 5)
    expect(pages["other"].locator("#stop")).to_be_disabled()

    pages["owner"].click("#stop")
    expect(pages["sender"].locator(".msg--assistant").last.locator(".msg-status")).to_have_text("cancelled", timeout=5000)
    expect(pages["other"].locator("#stop")).to_be_hidden()


def test_a_new_chat_needs_no_title_is_named_by_its_first_message_and_renames_inline(login, user, chat, stack):
    _context, page = login(user)
    page.click(".new-chat button")  # no title typed
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]+/$"))
    expect(page.locator("#chat-title")).to_have_text("New chat")
    _send(page, "  Plan the launch\nwith details")
    expect(page.locator("#chat-title")).to_have_text("Plan the launch")
    _wait_streaming(page, 3)
    page.click("#stop")
    chat_id = page.url.rstrip("/").rsplit("/", 1)[1]
    from chats.models import Chat

    assert Chat.objects.get(pk=chat_id).title == "Plan the launch"
    chat_action(page, "#rename-chat")
    page.fill("#chat-title-input", "Launch plan")
    page.keyboard.press("Enter")
    expect(page.locator("#chat-title")).to_have_text("Launch plan")
    assert Chat.objects.get(pk=chat_id).title == "Launch plan"
    page.reload()
    expect(page.locator("#chat-title")).to_have_text("Launch plan")


@pytest.mark.screenshots
def test_dark_mode_follows_the_system_and_a_failed_tile_says_why_on_hover(login, user, chat, stack):
    Stream.objects.create(
        chat=chat, status="failed", reason="the provider answered 400: model not found", provider="x", model="y"
    )
    context, home = login(user)
    dark = context.new_page()
    dark.emulate_media(color_scheme="dark")
    dark.goto(f"{stack.url}/?workspace={chat.workspace_id}")
    assert dark.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(19, 21, 24)"
    assert home.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
    state = dark.locator(f'.tile[data-chat-id="{chat.id}"] .tile-state')
    expect(state).to_have_attribute("title", "the provider answered 400: model not found")
    if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS"):
        dark.screenshot(path=str(SCREENSHOTS / "home-dark.png"), full_page=True)


def test_enter_sends_shift_enter_breaks_the_line_and_escape_stops(login, user, chat, stack):
    context, _home = login(user)
    page = context.new_page()
    page.goto(f"{stack.url}/chats/{chat.id}/")
    page.click("#composer-input")
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#composer-input") == "first line\nsecond line"
    page.keyboard.press("Enter")
    expect(page.locator(".msg--user").last).to_contain_text("second line")
    _wait_streaming(page, 3)

    # Esc in another field is that field's: the search box is cleared, the reply goes on
    page.click("#chat-search")
    page.keyboard.type("zzz")
    page.keyboard.press("Escape")
    expect(page.locator("#chat-search")).to_have_value("")
    page.wait_for_timeout(300)
    assert Stream.objects.filter(chat=chat).get().status == "streaming"
    expect(page.locator("#stop")).to_be_visible()

    page.click("#composer-input")
    page.keyboard.press("Escape")
    expect(page.locator(".msg--assistant").last.locator(".msg-status")).to_have_text("cancelled", timeout=5000)
    assert Message.objects.filter(chat=chat, role="user").get().content == "first line\nsecond line"


def test_the_system_prompt_is_saved_from_its_side_section_and_used_by_the_next_turn(login, user, chat, stack):
    context, _home = login(user)
    page = context.new_page()
    page.goto(f"{stack.url}/chats/{chat.id}/")
    expect(page.locator("#system-summary")).to_have_text("none")
    page.locator("#system-section > summary").click()
    page.fill("#system-prompt", "Answer like a pirate.")
    expect(page.locator("#system-status")).to_have_text("Not saved yet")
    page.click("#system-save")
    expect(page.locator("#system-status")).to_have_text("Saved: the next replies follow it.")
    expect(page.locator("#system-summary")).to_have_text("on")
    chat.refresh_from_db()
    assert chat.system_prompt == "Answer like a pirate."

    page.reload()
    expect(page.locator("#system-prompt")).to_have_value("Answer like a pirate.")  # the section stayed open
    _send(page, "/echo ahoy")
    expect(page.locator(".msg--assistant").last.locator(".msg-content")).to_have_text("ahoy", timeout=10000)
    assert Stream.objects.filter(chat=chat).latest("created_at").system_prompt == "Answer like a pirate."

    page.fill("#system-prompt", "   ")
    page.click("#system-save")
    expect(page.locator("#system-status")).to_have_text("Removed: the next replies have none.")
    expect(page.locator("#system-summary")).to_have_text("none")
    chat.refresh_from_db()
    assert chat.system_prompt == ""


def test_a_streaming_tile_says_stalled_when_its_model_goes_quiet(login, user, chat, stack):
    # This process plays a worker whose model has stopped talking: it holds the lock (heartbeat)
    # and has said one thing. The stack's worker never sees this turn (another queue).
    from streams import eventlog, events, locks
    from streams.services import stream_start

    turn = stream_start(chat=chat, content="Think for a long time")
    Stream.objects.filter(pk=turn.stream.id).update(status=Stream.Status.STREAMING)
    started = events.stream_event(type=events.STARTED, chat_id=chat.id, stream_id=turn.stream.id, seq=1)
    eventlog.append(chat_id=chat.id, stream_id=turn.stream.id, event=started)
    context, home = login(user)
    tile = home.locator(f'.tile[data-chat-id="{chat.id}"]')
    try:
        deadline = time.monotonic() + 10
        while not tile.get_attribute("class").count("tile--stalled") and time.monotonic() < deadline:
            locks.lock_heartbeat(chat_id=chat.id, stream_id=turn.stream.id)
            time.sleep(0.5)
        expect(tile).to_have_class(re.compile(r"\btile--stalled\b"))  # 2 s quiet, seen by the page's re-read
        expect(tile).to_have_attribute("data-state", "streaming")
        expect(tile.locator(".tile-state")).to_have_text(re.compile(r"^stalled — no word for \d+ s$"))
        delta = events.stream_event(type=events.DELTA, chat_id=chat.id, stream_id=turn.stream.id, seq=2, text="Well ")
        eventlog.append(chat_id=chat.id, stream_id=turn.stream.id, event=delta)
        deadline = time.monotonic() + 10
        while tile.get_attribute("class").count("tile--stalled") and time.monotonic() < deadline:
            locks.lock_heartbeat(chat_id=chat.id, stream_id=turn.stream.id)
            time.sleep(0.5)
        expect(tile).not_to_have_class(re.compile(r"\btile--stalled\b"))  # it spoke again
        expect(tile.locator(".tile-state")).to_have_text("streaming")
    finally:
        locks.lock_release(chat_id=chat.id, stream_id=turn.stream.id)


def test_a_reply_that_ends_while_you_are_away_marks_its_tile_until_you_look(login, user, chat, stack):
    context, home = login(user)
    tile = home.locator(f'.tile[data-chat-id="{chat.id}"]')
    badge = tile.locator(".tile-unread")
    page = context.new_page()
    page.goto(f"{stack.url}/chats/{chat.id}/")
    _send(page, "/echo in front of you")  # ends while the chat is in front of the reader
    expect(page.locator(".msg--assistant").last.locator(".msg-content")).to_have_text("in front of you", timeout=10000)
    home.reload()
    expect(tile).to_have_attribute("data-state", "idle")
    expect(badge).to_be_hidden()

    _send(page, "Write a long answer")
    _wait_streaming(page, 3)
    set_visibility(page, "hidden")  # the reader goes to another tab
    expect(tile).to_have_attribute("data-state", "streaming", timeout=5000)
    expect(badge).to_be_visible(timeout=20000)  # live, as the turn ends
    expect(badge).to_have_text("new reply")
    home.reload()
    expect(badge).to_be_visible()  # the server's answer too

    set_visibility(page, "visible")  # back to the chat: seen
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        home.reload()
        if not badge.is_visible():
            break
        time.sleep(0.3)
    expect(badge).to_be_hidden()


@pytest.mark.screenshots
def test_a_tool_call_that_waits_for_approval_is_approved_from_the_chat_page(login, user, chat, stack, tmp_path):
    chat.tools = ["demo.*", "ask.*"]
    chat.save(update_fields=["tools"])
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")

    _send(page, '/tool ask.roll {"sides": 6, "count": 2}')

    box = page.locator("#tool-approval")
    expect(box).to_be_visible(timeout=15000)
    expect(page.locator("#tool-approval-text")).to_contain_text('ask.roll waits for your approval: {"sides":6,"count":2}')
    card = page.locator(".msg--assistant .tool-card").last
    expect(card.locator(".tool-state")).to_have_text(re.compile(r"^waits for approval"))
    expect(page.locator(f'#chat-links [data-chat-id="{chat.id}"] .chat-link-state')).to_have_text("needs you")
    for scheme in ("dark", "light"):  # the waiting call, its buttons and its card, in both schemes
        page.emulate_media(color_scheme=scheme)
        assert axe_violations(page) == [], f"waiting for approval, {scheme}"
    page.screenshot(path=str(tmp_path / "approval.png"))
    if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "tool-approval.png"))
    page.click("#tool-approve")

    expect(box).to_be_hidden()
    expect(page.locator(".msg--assistant .msg-content").last).to_have_text(re.compile(r"^\s*\d \+ \d = \d+\s*$"), timeout=15000)
    expect(page.locator("#composer-status")).to_contain_text("The tool answered: ok")
    expect(page.locator("#stop")).to_be_hidden(timeout=15000)  # the terminal event: sent once the seal committed
    message = Message.objects.filter(chat=chat, role="assistant").latest("created_at")
    assert [(c["tool"], c["status"]) for c in message.tool_calls] == [("ask.roll", "ok")]

    # The call is a card in the reply: folded to its tool and state; unfolded, its arguments and result.
    expect(card.locator(".tool-name")).to_have_text("ask.roll")
    expect(card.locator(".tool-state")).to_have_text(re.compile(r"^done · \d+(\.\d)? m?s$"))
    card.locator("summary").click()
    expect(card.locator(".tool-arguments")).to_have_text('{\n  "count": 2,\n  "sides": 6\n}')  # keys in one order
    expect(card.locator(".tool-result")).to_have_text(message.tool_calls[0]["content"])
    live = card.inner_text()
    for scheme in ("dark", "light"):
        page.emulate_media(color_scheme=scheme)
        assert axe_violations(page) == [], f"a tool card, {scheme}"
    # The same card after a reload, from the reply's record.
    page.reload()
    card = page.locator(".msg--assistant .tool-card").last
    card.locator("summary").click()
    assert card.inner_text() == live
    for viewport, name in (({"width": 1280, "height": 860}, "desktop"), ({"width": 390, "height": 844}, "phone")):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(tmp_path / f"tool-card-{name}.png"))
        if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS"):
            page.screenshot(path=str(SCREENSHOTS / f"tool-card-{name}.png"))


def test_the_tools_picker_lists_the_servers_tools_and_saves_the_chats_choice(login, user, chat, stack):
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    section = page.locator("#tools-section")
    # A worker lists each server's tools as it starts; the page offers what it listed.
    deadline = time.monotonic() + 20
    while not page.locator('#tools-form input[value="demo.roll"]').count() and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    section.locator("summary").click()
    expect(section.locator("#tools-summary")).to_have_text("none")
    page.check('#tools-form input[value="demo.roll"]')
    page.check('#tools-form input[value="ask.*"]')
    expect(page.locator('#tools-form input[value="ask.roll"]')).to_be_disabled()  # "all its tools" covers it
    assert axe_violations(page) == []
    page.click("#tools-save")

    expect(page.locator("#tools-status")).to_have_text("Saved: the next replies may call them.")
    chat.refresh_from_db()
    assert chat.tools == ["demo.roll", "ask.*"]
    page.reload()
    expect(page.locator('#tools-form input[value="demo.roll"]')).to_be_checked()
    expect(page.locator('#tools-form input[value="demo.clock"]')).not_to_be_checked()


def test_a_message_goes_over_the_pages_socket_and_a_long_one_is_posted(login, user, chat, stack):
    context, page = login(user)
    posts, sent, heard = [], [], []

    def watch(ws):
        ws.on("framesent", lambda payload: sent.append(str(payload)))
        ws.on("framereceived", lambda payload: heard.append(str(payload)))

    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/messages") else None)
    page.on("websocket", watch)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    deadline = time.monotonic() + 10
    while not any('"subscribed"' in frame for frame in heard) and time.monotonic() < deadline:
        page.wait_for_timeout(50)

    _send(page, "/echo over the socket")
    expect(page.locator(".msg--assistant").last).to_contain_text("over the socket", timeout=10000)
    expect(page.locator("#send")).to_have_text("Send", timeout=10000)  # the turn ended
    assert posts == []  # no request: the socket carried it
    sends = [frame for frame in sent if '"message.send"' in frame]
    assert len(sends) == 1 and "over the socket" in sends[0]
    assert any('"message.sent"' in frame for frame in heard)
    assert Message.objects.filter(chat=chat, role="user", content="/echo over the socket").count() == 1

    long = "word " * 14_000  # 70 KB: past a socket frame, so the page posts it
    _send(page, long)
    expect(page.locator(".msg--assistant")).to_have_count(2, timeout=10000)
    _wait_streaming(page, 3)
    assert len(posts) == 1 and len([frame for frame in sent if '"message.send"' in frame]) == 1
    assert Message.objects.filter(chat=chat, role="user", content=long.strip()).count() == 1
    page.click("#stop")
    expect(page.locator("#stop")).to_be_hidden(timeout=5000)
