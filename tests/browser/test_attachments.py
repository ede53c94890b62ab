"""Files in a conversation, in a real Chromium: chosen with the file button, dropped on the page or
pasted into the message box; uploaded with a progress bar while Send waits; removed before
sending; refused in the server's words; sent as thumbnails and chips that the local model names
on its reply's first lines; seen live in another tab, after a reload and among earlier messages;
and how they look (desktop and phone, light and dark, axe-core)."""

from __future__ import annotations

import base64
import io
import os
import random
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from chats.attachments import attachment_upload
from chats.models import Attachment, Message
from chats.services import chat_create, workspace_create
from tests.support.files import EXECUTABLE, image_bytes, pdf_bytes

from .conftest import SCREENSHOTS
from .pages import axe_violations, until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

DESKTOP, PHONE = {"width": 1280, "height": 860}, {"width": 390, "height": 844}
NOTES = b"Landing sites, by mission:\nApollo 11: Sea of Tranquility\nApollo 12: Ocean of Storms\n"


@pytest.fixture
def user(make_user):
    return make_user("ada-files", password="pw-123456")


@pytest.fixture
def chat(user):
    return chat_create(workspace=workspace_create(name="Research", owner=user), title="Moon pictures", created_by=user)


def picture(size=(800, 600), *, grain: bool = False) -> bytes:
    """A night sky with a moon: something a reader recognises in a thumbnail (with ``grain``, a
    file that does not compress: a large upload)."""
    image = Image.new("RGB", size, (18, 24, 48))
    draw = ImageDraw.Draw(image)
    for y in range(size[1]):
        shade = int(24 + 60 * y / size[1])
        draw.line([(0, y), (size[0], y)], fill=(shade // 2, shade // 2 + 6, shade + 40))
    w, h = size
    draw.ellipse([w * 0.55, h * 0.18, w * 0.8, h * 0.18 + w * 0.25], fill=(236, 232, 214))
    draw.rectangle([0, h * 0.8, w, h], fill=(40, 44, 52))
    if grain:
        noise = Image.frombytes("RGB", size, random.Random(7).randbytes(w * h * 3))
        image = Image.blend(image, noise, 0.15)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def open_chat(login, user, chat, stack, viewport=None):
    context, page = login(user, viewport=viewport)
    # File choosers intercepted from the start: a listener added only around a key press is
    # turned on too late for a chooser that press opens at once.
    page.on("filechooser", lambda chooser: None)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    return context, page


def choose(page, *files) -> None:
    """Files chosen with the composer's file button (name, MIME type, bytes each)."""
    with page.expect_file_chooser() as chooser:
        page.click("#attach")
    chooser.value.set_files([{"name": n, "mimeType": t, "buffer": b} for n, t, b in files])


def _js_files(files) -> list:
    return [[n, t, base64.b64encode(b).decode()] for n, t, b in files]


MAKE_TRANSFER = """(files) => {
  const transfer = new DataTransfer();
  for (const [name, type, data] of files)
    transfer.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name, { type }));
  return transfer;
}"""


def drag(page, *files, then: str = "drop") -> bool:
    """Files dragged over the transcript, then dropped there (or taken away: "dragleave", or held
    there: ""): whether the drop zone showed while they were over the page."""
    return page.evaluate(
        f"""([files, then]) => {{
          const transfer = ({MAKE_TRANSFER})(files);
          const target = document.getElementById('transcript');
          const fire = (type) => target.dispatchEvent(new DragEvent(type, {{ bubbles: true, cancelable: true, dataTransfer: transfer }}));
          fire('dragenter');
          fire('dragover');
          const shown = !document.getElementById('drop-zone').hidden;
          if (then) fire(then);
          return shown;
        }}""",
        [_js_files(files), then],
    )


def leave(page) -> None:
    """The dragged files taken off the page again."""
    page.evaluate(
        f"""() => document.getElementById('transcript').dispatchEvent(
          new DragEvent('dragleave', {{ bubbles: true, dataTransfer: ({MAKE_TRANSFER})([['photo.jpg', 'image/jpeg', '']]) }}))"""
    )


def paste(page, *files, text: str | None = None) -> bool:
    """Files (or text) pasted into the message box: whether the page took the paste over from the browser."""
    return page.evaluate(
        f"""([files, text]) => {{
          const transfer = ({MAKE_TRANSFER})(files);
          if (text !== null) transfer.setData('text/plain', text);
          const box = document.getElementById('composer-input');
          box.focus();
          return !box.dispatchEvent(new ClipboardEvent('paste', {{ bubbles: true, cancelable: true, clipboardData: transfer }}));
        }}""",
        [_js_files(files), text],
    )


def chips(page):
    return page.locator("#composer-files .attach-chip")


def wait_uploaded(page, count: int) -> None:
    expect(page.locator('#composer-files .attach-chip[data-state="ready"]')).to_have_count(count, timeout=10000)
    expect(page.locator("#send")).to_be_enabled()


def send(page, text: str = "") -> None:
    page.fill("#composer-input", text)
    page.click("#send")


def replied(page) -> None:
    expect(page.locator("#stop")).to_be_hidden(timeout=20000)
    expect(page.locator(".msg--assistant .msg-meta").last).not_to_be_empty()


def last_question(page):
    return page.locator(".msg--user").last


def reply_text(page) -> str:
    return page.locator(".msg--assistant .msg-content").last.inner_text()


def line(attachment: Attachment) -> str:
    return f"{attachment.name} ({attachment.size} bytes, {attachment.content_type})"


def files_as_shown(item) -> list:
    """A message's files as a reader meets them: each link, its target and its image or words."""
    return item.locator(".msg-files > li > a").evaluate_all(
        """(links) => links.map((a) => {
          const img = a.querySelector('img');
          return [a.className, a.getAttribute('href'), a.hasAttribute('download'), a.target,
                  img ? [img.getAttribute('src'), img.alt, img.getAttribute('width'), img.getAttribute('height')] : a.innerText];
        })"""
    )


def test_the_file_button_uploads_with_progress_and_the_message_shows_a_thumbnail_the_reply_names(login, user, chat, stack):
    context, page = open_chat(login, user, chat, stack)
    expect(page.get_by_role("button", name="Attach files")).to_be_visible()
    assert page.locator("#attach").evaluate("b => b.closest('.composer-box') !== null")  # inside the box, beside Send
    # A slow link: the upload takes seconds, its bar grows and Send waits for it.
    network = context.new_cdp_session(page)
    network.send("Network.enable")
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 200 * 1024},
    )
    big = picture(grain=True)
    assert len(big) > 400 * 1024, len(big)  # two seconds and more at 200 KB/s
    choose(page, ("moon.png", "image/png", big))
    chip = chips(page).first
    expect(chip).to_have_attribute("data-state", "uploading")
    expect(chip.locator(".file-name")).to_have_text("moon.png")
    expect(page.locator("#send")).to_be_disabled()
    until(page, "() => { const p = document.querySelector('.attach-chip progress'); return p && p.value > 0 && p.value < 100; }")
    page.fill("#composer-input", "What is on this picture?")
    page.keyboard.press("Enter")  # Enter does not send while a file is on its way
    expect(page.locator(".msg--user")).to_have_count(0)
    network.send(
        "Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    )
    wait_uploaded(page, 1)
    expect(chip.locator("progress")).to_have_count(0)
    expect(chip.locator(".file-meta")).to_contain_text("image")
    expect(chip.locator("img")).to_have_attribute(
        "src", f"/api/mothership/chats/{chat.id}/attachments/{chip.get_attribute('data-attachment-id')}/thumbnail"
    )

    page.click("#send")

    replied(page)
    attachment = Attachment.objects.get(chat=chat)
    question = last_question(page)
    expect(question.locator(".msg-content")).to_have_text("What is on this picture?")
    image = question.locator(".msg-files img")
    expect(image).to_have_attribute("alt", "moon.png")
    assert (image.get_attribute("width"), image.get_attribute("height")) == ("240", "180")  # 800 × 600, fitted
    expect(image).to_have_attribute("src", f"/api/mothership/chats/{chat.id}/attachments/{attachment.pk}/thumbnail")
    expect(question.locator(".msg-files a")).to_have_attribute(
        "href", f"/api/mothership/chats/{chat.id}/attachments/{attachment.pk}"
    )
    until(page, "() => document.querySelector('.msg--user .msg-files img').naturalWidth > 0")  # the thumbnail loaded
    assert reply_text(page).splitlines()[0] == line(attachment) == f"moon.png ({attachment.size} bytes, image/png)"
    expect(chips(page)).to_have_count(0)  # sent: the composer is empty again
    expect(page.locator("#composer-files")).to_be_hidden()
    assert list(Message.objects.get(chat=chat, role="user").attachments.all()) == [attachment]


def test_files_dropped_on_the_page_are_sent_without_text_as_chips_that_download(login, user, stack):
    chat = chat_create(workspace=workspace_create(name="Reading", owner=user), title="", created_by=user)
    _, page = open_chat(login, user, chat, stack)
    expect(page.locator("#drop-zone")).to_be_hidden()
    shown = drag(page, ("landing-sites.txt", "text/plain", NOTES), ("report.pdf", "application/pdf", pdf_bytes(pages=3)))
    assert shown  # a drop zone while the files are over the page
    expect(page.locator("#drop-zone")).to_be_hidden()  # and gone once they are dropped
    wait_uploaded(page, 2)
    expect(chips(page).locator(".file-name")).to_have_text(["landing-sites.txt", "report.pdf"])

    send(page, "")  # files alone: no text needed

    replied(page)
    question = last_question(page)
    expect(question.locator(".msg-content")).to_have_text("")
    chips_shown = question.locator(".msg-files .file-chip")
    expect(chips_shown).to_have_count(2)
    text, pdf = Attachment.objects.filter(chat=chat).order_by("created_at")
    expect(chips_shown.nth(0)).to_have_attribute("href", f"/api/mothership/chats/{chat.id}/attachments/{text.pk}")
    assert chips_shown.nth(0).get_attribute("download") == ""
    # The size in words, by the rule the page uses on a reload (Django's filesizeformat).
    expect(chips_shown.nth(0).locator(".file-meta")).to_have_text(f"{text.size}\u00a0bytes · text")
    expect(chips_shown.nth(1).locator(".file-meta")).to_have_text(f"{filesizeformat(pdf.size)} · PDF, 3 pages")
    assert filesizeformat(pdf.size) == "1.1\u00a0KB"
    reply = Message.objects.filter(chat=chat, role="assistant").get().content
    assert reply.splitlines()[:2] == [line(text), line(pdf)]
    # An untitled chat is named by its first file, on the page as on the server.
    expect(page.locator("#chat-title")).to_have_text("landing-sites.txt")
    chat.refresh_from_db()
    assert chat.title == "landing-sites.txt"


def test_an_image_pasted_into_the_message_box_is_attached_and_text_still_pastes_as_text(login, user, chat, stack):
    _, page = open_chat(login, user, chat, stack)
    assert not paste(page, text="Which way up is it?")  # text is the browser's to paste
    expect(chips(page)).to_have_count(0)
    assert paste(page, ("image.png", "image/png", image_bytes("PNG", size=(300, 600))))  # a file is attached instead
    wait_uploaded(page, 1)
    page.fill("#composer-input", "Which way up is it?")

    page.click("#send")

    replied(page)
    image = last_question(page).locator(".msg-files img")
    assert (image.get_attribute("width"), image.get_attribute("height")) == ("90", "180")  # a tall one keeps its shape
    assert reply_text(page).splitlines()[0].startswith("image.png (")


def test_files_chosen_and_removed_from_the_keyboard_are_deleted_and_not_sent(login, user, chat, stack):
    _, page = open_chat(login, user, chat, stack)
    page.focus("#composer-input")
    for _ in range(4):  # the model, then the file button
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id === 'attach'"):
            break
    expect(page.locator("#attach")).to_be_focused()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(
        [{"name": n, "mimeType": "text/plain", "buffer": b} for n, b in (("first.txt", b"first"), ("second.txt", b"second"))]
    )
    wait_uploaded(page, 2)
    first = Attachment.objects.get(chat=chat, name="first.txt")

    page.get_by_role("button", name="Remove first.txt").focus()
    page.keyboard.press("Enter")  # from the keyboard

    expect(chips(page)).to_have_count(1)
    expect(page.get_by_role("button", name="Remove second.txt")).to_be_focused()  # the focus stays among the files
    deadline = time.monotonic() + 5
    while Attachment.objects.filter(pk=first.pk).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Attachment.objects.filter(pk=first.pk).exists()  # DELETE before send
    send(page, "Only one file")
    replied(page)
    expect(last_question(page).locator(".file-name")).to_have_text(["second.txt"])
    assert [a.name for a in Message.objects.get(chat=chat, role="user").attachments.all()] == ["second.txt"]

    expect(page.get_by_role("button", name="Remove second.txt")).to_have_count(0)
    choose(page, ("third.txt", "text/plain", b"third"))
    wait_uploaded(page, 1)
    page.get_by_role("button", name="Remove third.txt").click()
    expect(page.locator("#composer-files")).to_be_hidden()
    expect(page.locator("#composer-input")).to_be_focused()  # the last one gone: back to the message box
    expect(page.locator("#composer-input")).to_have_attribute("required", "")  # and text is needed again


def test_an_unsupported_file_is_refused_in_the_servers_words_and_its_chip_goes(login, user, chat, stack):
    login.allowed.append(r"status of 415")  # the browser logs the refused upload
    _, page = open_chat(login, user, chat, stack)
    choose(page, ("tool.exe", "application/octet-stream", EXECUTABLE))
    expect(page.locator("#composer-status")).to_contain_text(
        "tool.exe is not a type that can be attached; attach PNG, JPEG, GIF or WebP images, PDF, or UTF-8 text"
    )
    expect(chips(page)).to_have_count(0)
    expect(page.locator("#send")).to_be_enabled()
    assert not Attachment.objects.filter(chat=chat).exists()


def test_a_file_the_chats_model_cannot_read_refuses_the_send_and_stays(login, user, chat, stack):
    login.allowed.append(r"status of 400")
    chat.model_id = "local-terse"  # reads no images (tests/browser/conftest.py)
    chat.save(update_fields=["model_id"])
    _, page = open_chat(login, user, chat, stack)
    choose(page, ("moon.png", "image/png", image_bytes("PNG")))
    wait_uploaded(page, 1)
    send(page, "Describe it")
    expect(page.locator("#composer-status")).to_contain_text("The model Local (terse) cannot read images (moon.png)")
    expect(chips(page)).to_have_count(1)  # still there: remove it, or choose another model
    expect(page.locator("#composer-input")).to_have_value("Describe it")
    expect(page.locator(".msg--user")).to_have_count(0)


def test_another_tab_sees_the_files_live_and_a_reload_shows_the_same(login, user, chat, stack):
    context, page = open_chat(login, user, chat, stack)
    other = context.new_page()
    other.goto(f"{stack.url}/chats/{chat.id}/")
    choose(page, ("moon.png", "image/png", picture((1000, 400))), ("landing-sites.txt", "text/plain", NOTES))
    wait_uploaded(page, 2)

    send(page, "/echo Two files")

    expect(other.locator(".msg--user .msg-files > li")).to_have_count(2, timeout=10000)  # live, no reload
    replied(page)
    sent = files_as_shown(last_question(page))
    assert files_as_shown(other.locator(".msg--user").last) == sent
    kinds = [row[0] for row in sent]
    assert kinds == ["msg-thumb", "file-chip"]
    assert sent[0][3] == "_blank" and sent[0][4][1:] == ["moon.png", "240", "96"]  # a wide one: fitted to the width
    page.reload()
    assert files_as_shown(last_question(page)) == sent  # the page draws them as the script did
    expect(last_question(page).locator(".msg-edit")).to_be_visible()  # Edit under the files, as before
    assert last_question(page).evaluate(
        "li => li.querySelector('.msg-files').compareDocumentPosition(li.querySelector('.msg-edit')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )


def test_earlier_messages_show_their_files(login, user, chat, stack):
    # The first question carries a file; 100 messages after it push it off the first page.
    attachment = attachment_upload(chat=chat, user=user, file=SimpleUploadedFile("moon.png", picture(), "image/png"))
    question = Message.objects.create(chat=chat, role="user", content="The oldest question")
    question.attachments.add(attachment)
    Attachment.objects.filter(pk=attachment.pk).update(sent_at=timezone.now())
    parent = question
    for n in range(100):
        parent = Message.objects.create(
            chat=chat, role="assistant" if n % 2 == 0 else "user", content=f"Message {n}", parent=parent
        )
    _, page = open_chat(login, user, chat, stack)
    expect(page.locator(".msg-files")).to_have_count(0)

    page.click("#earlier-messages")

    oldest = page.locator(f'[data-message-id="{question.pk}"]')
    expect(oldest.locator(".msg-files img")).to_have_attribute("alt", "moon.png")
    shown = files_as_shown(oldest)
    assert shown[0][4] == [f"/api/mothership/chats/{chat.id}/attachments/{attachment.pk}/thumbnail", "moon.png", "240", "180"]


@pytest.mark.screenshots
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_files_look_right_on_desktop_and_phone_with_no_accessibility_violation(login, user, chat, stack, scheme):
    found = {}
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        _, page = open_chat(login, user, chat, stack, viewport=viewport)
        page.emulate_media(color_scheme=scheme)
        if name == "desktop":
            choose(
                page,
                ("moon.png", "image/png", picture()),
                ("quarterly-report-2026.pdf", "application/pdf", pdf_bytes(pages=12)),
                ("landing-sites.txt", "text/plain", NOTES),
            )
            wait_uploaded(page, 3)
            send(page, "/echo Which landing site is on the picture?")
            replied(page)
        expect(page.locator(".msg--user .msg-files > li")).to_have_count(3)
        until(page, "() => document.querySelector('.msg--user .msg-files img').naturalWidth > 0")
        # The composer with files under way to the next message.
        choose(
            page, ("crater.png", "image/png", picture((600, 800))), ("notes-from-the-mission-briefing.md", "text/markdown", NOTES)
        )
        wait_uploaded(page, 2)
        last_question(page).evaluate("li => li.scrollIntoView({ block: 'start' })")  # the message, its reply and the composer
        # nothing is wider than the screen
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), name
        found[f"a message with files and the composer with chips, {scheme}, {name}"] = axe_violations(page)
        page.locator("#composer-input").focus()
        if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"attachments-{name}-{scheme}.png"))
        assert drag(page, ("photo.jpg", "image/jpeg", image_bytes("JPEG")), then="")
        found[f"the drop zone, {scheme}, {name}"] = axe_violations(page)
        if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS") and name == "desktop":
            page.screenshot(path=str(SCREENSHOTS / f"attachments-drop-{name}-{scheme}.png"))
        leave(page)
        expect(page.locator("#drop-zone")).to_be_hidden()  # taken away again: nothing attached
        expect(chips(page)).to_have_count(2)
        while chips(page).count():  # the next viewport starts with an empty composer
            chips(page).first.locator(".attach-remove").click()
    failing = {where: violations for where, violations in found.items() if violations}
    assert failing == {}, failing
