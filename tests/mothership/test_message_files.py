"""The chat page draws each question's files under its text (templates/mothership/_message_files.html):
an image as a thumbnail of a fixed box that opens the full image, anything else as a chip that
downloads it, with its size and kind in words; names are text, never markup."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from chats.attachments import attachment_upload
from mothership.templatetags.attachments import kind_words, preview_box
from streams.services import stream_start
from tests.support.files import image_bytes, pdf_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user):
    client = Client()
    client.force_login(user)
    return client


def upload(chat, user, name: str, data: bytes, content_type: str):
    return attachment_upload(chat=chat, user=user, file=SimpleUploadedFile(name, data, content_type))


def test_a_questions_files_are_drawn_under_its_text(browser, chat, user):
    image = upload(chat, user, "moon.png", image_bytes("PNG", size=(800, 200)), "image/png")
    pdf = upload(chat, user, "report.pdf", pdf_bytes(pages=3), "application/pdf")
    notes = upload(chat, user, "<i>notes & co.txt", b"Apollo 11\n", "text/plain")
    stream_start(chat=chat, content="Look at these", user=user, attachments=[image, pdf, notes])

    html = browser.get(f"/chats/{chat.id}/").content.decode()

    files = re.search(r'<ul class="msg-files".*?</ul>', html, re.S).group(0)
    base = f"/api/mothership/chats/{chat.id}/attachments"
    assert (
        f'<a class="msg-thumb" href="{base}/{image.pk}" target="_blank" rel="noopener"><img src="{base}/{image.pk}/thumbnail" '
        'alt="moon.png" width="240" height="60" loading="lazy" decoding="async"></a>'
    ) in files  # 800 × 200, fitted to the width
    assert f'<a class="file-chip" href="{base}/{pdf.pk}" download>' in files
    assert "PDF, 3 pages" in files and "1.1\xa0KB" in files
    assert "&lt;i&gt;notes &amp; co.txt" in files and "<i>notes" not in html  # a name is text
    assert files.index("moon.png") < files.index("report.pdf") < files.index("notes")  # the order they were sent in
    assert html.index("Look at these") < html.index('<ul class="msg-files"')


def test_a_message_without_files_has_no_list(browser, chat, user):
    stream_start(chat=chat, content="Just words", user=user)
    assert "msg-files" not in browser.get(f"/chats/{chat.id}/").content.decode()


@pytest.mark.parametrize(
    ("width", "height", "box"),
    [(800, 600, (240, 180)), (300, 600, (90, 180)), (1000, 400, (240, 96)), (64, 48, (64, 48)), (None, None, (240, 180))],
)
def test_a_thumbnails_box_keeps_the_images_shape_and_never_grows_it(width, height, box):
    assert tuple(preview_box({"width": width, "height": height}).values()) == box


def test_the_kind_in_words():
    assert kind_words({"kind": "pdf", "pages": 1}) == "PDF, 1 page"
    assert kind_words({"kind": "pdf", "pages": None}) == "PDF"
    assert kind_words({"kind": "text"}) == "text" and kind_words({"kind": "image"}) == "image"
