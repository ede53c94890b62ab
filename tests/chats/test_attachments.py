"""Attachments over the API: ``POST …/chats/<id>/attachments`` (type by the bytes, 413 / 415,
quotas), serving (members only, never a page), removing before sending, purging unsent uploads."""

from __future__ import annotations

import datetime
import hashlib
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image, ImageCms
from rest_framework.test import APIClient

from chats.attachments import attachments_purge_unsent
from chats.attachments.storage import attachment_storage
from chats.models import Attachment, Membership
from mothership.infra.throttles import user_rate_reset
from tests import factories
from tests.support.files import EXECUTABLE, GPS_IFD, MAKE, image_bytes, pdf_bytes

pytestmark = pytest.mark.django_db


def upload(api, chat, data: bytes, name: str):
    return api.post(f"/api/mothership/chats/{chat.id}/attachments", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def stored(attachment_id) -> bytes:
    row = Attachment.objects.get(pk=attachment_id)
    with attachment_storage().open(row.key) as f:
        return f.read()


@pytest.mark.parametrize(
    ("name", "data", "content_type", "kind"),
    [
        ("notes.txt", b"plain words\n", "text/plain", "text"),
        ("notes.md", b"# Title\n\n- a\n", "text/markdown", "text"),
        ("table.csv", b"a,b\n1,2\n", "text/csv", "text"),
        ("data.json", b'{"a": 1}', "application/json", "text"),
        ("main.py", "print('héllo')\n".encode(), "text/plain", "text"),
        ("page.html", b"<script>alert(1)</script>", "text/plain", "text"),  # never text/html
        ("report.pdf", pdf_bytes(), "application/pdf", "pdf"),
        ("photo.png", image_bytes("PNG"), "image/png", "image"),
        ("photo.jpg", image_bytes("JPEG"), "image/jpeg", "image"),
        ("anim.gif", image_bytes("GIF"), "image/gif", "image"),
        ("photo.webp", image_bytes("WEBP"), "image/webp", "image"),
        ("looks-like.txt", image_bytes("PNG"), "image/png", "image"),  # the bytes say what it is, not the name
    ],
)
def test_an_upload_is_typed_by_its_bytes_and_answers_201_with_the_contract_fields(api, chat, name, data, content_type, kind):
    answer = upload(api, chat, data, name)
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert {"id", "name", "content_type", "size", "url"} <= set(body)
    assert (body["name"], body["content_type"], body["kind"]) == (name, content_type, kind)
    row = Attachment.objects.get(pk=body["id"])
    assert body["size"] == row.size == len(stored(row.pk))
    assert body["url"] == f"/api/mothership/chats/{chat.id}/attachments/{row.pk}"
    assert row.sent_at is None and row.chat_id == chat.id
    if kind == "text":
        assert stored(row.pk) == data and row.text == data.decode()


def test_an_image_is_stored_without_its_exif_gps_or_text_chunks_and_has_a_thumbnail(api, chat):
    for fmt, name in (("JPEG", "a.jpg"), ("PNG", "a.png"), ("WEBP", "a.webp")):
        original = image_bytes(fmt, size=(900, 600))
        body = upload(api, chat, original, name).json()
        kept = stored(body["id"])
        assert b"FakeCam" not in kept and b"secret location" not in kept
        image = Image.open(io.BytesIO(kept))
        assert not image.getexif().get(MAKE) and not dict(image.getexif().get_ifd(GPS_IFD)), fmt
        assert image.size == (900, 600) and body["width"] == 900 and body["height"] == 600
        thumb = api.get(body["thumbnail_url"])
        assert thumb.status_code == 200 and thumb["Content-Type"] == "image/webp"
        assert max(Image.open(io.BytesIO(b"".join(thumb.streaming_content))).size) == 320


def test_an_image_turned_by_its_exif_orientation_is_stored_upright(api, chat):
    body = upload(api, chat, image_bytes("JPEG", size=(80, 40), orientation=6), "sideways.jpg").json()
    assert (body["width"], body["height"]) == (40, 80)  # rotated as the camera meant, then the tag dropped


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("setup.exe", EXECUTABLE),
        ("renamed.png", EXECUTABLE),  # an executable with an image's name
        ("renamed.txt", EXECUTABLE),
        ("archive.zip", b"PK\x03\x04" + bytes(200)),
        ("latin1.txt", "café au lait".encode("latin-1")),  # not UTF-8
    ],
)
def test_anything_not_supported_by_its_bytes_is_415_and_nothing_is_stored(api, chat, name, data):
    answer = upload(api, chat, data, name)
    assert answer.status_code == 415
    assert "PNG, JPEG, GIF or WebP" in answer.json()["detail"] and answer.json()["code"] == "unsupported_type"
    assert not Attachment.objects.exists()


def test_a_zero_byte_file_is_400_saying_it_is_empty(api, chat):
    answer = upload(api, chat, b"", "empty.txt")
    assert answer.status_code == 400 and "empty" in answer.json()["detail"]


def test_a_damaged_image_is_400_and_leaves_nothing_in_storage(api, chat):
    answer = upload(api, chat, image_bytes("PNG")[:40], "cut.png")
    assert answer.status_code == 400 and "could not be read" in answer.json()["detail"]
    assert not Attachment.objects.exists()


def test_a_file_past_the_size_limit_is_413_naming_the_limit(api, chat, settings):
    settings.MOTHERSHIP_ATTACHMENT_MAX_BYTES = 1000
    answer = upload(api, chat, b"x" * 1001, "big.txt")
    assert answer.status_code == 413 and "1,001 bytes; a file may be 1,000 bytes" in answer.json()["detail"]
    assert upload(api, chat, b"x" * 1000, "fits.txt").status_code == 201


def test_the_quota_of_bytes_and_of_files_per_user_is_413_with_what_is_used(api, chat, settings):
    settings.MOTHERSHIP_ATTACHMENT_QUOTA_BYTES = 2500
    assert upload(api, chat, b"a" * 2000, "one.txt").status_code == 201
    answer = upload(api, chat, b"b" * 600, "two.txt")
    assert answer.status_code == 413 and answer.json()["code"] == "quota_exceeded"
    assert "use 2 KB of your 2.4 KB" in answer.json()["detail"]
    settings.MOTHERSHIP_ATTACHMENT_QUOTA_BYTES = 10**9
    settings.MOTHERSHIP_ATTACHMENT_QUOTA_FILES = 3
    assert [upload(api, chat, b"t", f"{n}.txt").status_code for n in range(3)] == [201, 201, 413]
    assert "3 files" in upload(api, chat, b"t", "x.txt").json()["detail"]


def test_a_flood_of_tiny_files_from_one_user_stops_at_the_default_rate_with_retry_after(api, chat, user, settings):
    settings.MOTHERSHIP_UPLOAD_RATE = "120/min"  # the default (the suite raises it for everything else)
    user_rate_reset(scope="upload", user=user)
    try:
        codes = [upload(api, chat, b"t", f"{n}.txt").status_code for n in range(125)]
        assert codes == [201] * 120 + [429] * 5
        assert Attachment.objects.filter(uploaded_by=user).count() == 120
        assert int(upload(api, chat, b"t", "late.txt")["Retry-After"]) > 0
    finally:
        user_rate_reset(scope="upload", user=user)


def test_an_upload_without_the_file_field_is_400(api, chat):
    answer = api.post(f"/api/mothership/chats/{chat.id}/attachments", {"other": "x"}, format="multipart")
    assert answer.status_code == 400 and "file" in answer.json()["errors"]


def test_non_members_get_404_for_upload_and_download(api, chat, make_user):
    body = upload(api, chat, b"secret", "s.txt").json()
    stranger = APIClient()
    stranger.force_authenticate(make_user("mallory"))
    assert upload(stranger, chat, b"x", "x.txt").status_code == 404
    assert stranger.get(body["url"]).status_code == 404
    assert APIClient().get(body["url"]).status_code in (401, 403)


def test_an_unsent_upload_is_its_uploaders_alone_and_a_sent_one_every_members(api, chat, make_user, turns_not_enqueued):
    body = upload(api, chat, b"draft", "d.txt").json()
    colleague = make_user("bob")
    factories.MembershipFactory(user=colleague, workspace=chat.workspace, role=Membership.Role.MEMBER)
    other = APIClient()
    other.force_authenticate(colleague)
    assert other.get(body["url"]).status_code == 404  # not sent yet: nobody else's business
    assert (
        api.post(
            f"/api/mothership/chats/{chat.id}/messages", {"content": "see", "attachments": [body["id"]]}, format="json"
        ).status_code
        == 201
    )
    assert other.get(body["url"]).status_code == 200


def test_a_text_file_downloads_as_an_attachment_never_as_a_page(api, chat):
    body = upload(api, chat, b"<html><script>alert(1)</script></html>", "page.html").json()
    answer = api.get(body["url"])
    assert answer.status_code == 200
    assert answer["Content-Type"] == "text/plain; charset=utf-8"
    assert answer["Content-Disposition"].startswith("attachment;") and "page.html" in answer["Content-Disposition"]
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in answer["Content-Security-Policy"]
    assert b"".join(answer.streaming_content) == b"<html><script>alert(1)</script></html>"


def test_an_image_is_served_inline_and_a_pdf_as_a_download(api, chat):
    image = upload(api, chat, image_bytes("PNG"), "p.png").json()
    pdf = upload(api, chat, pdf_bytes(), "r.pdf").json()
    shown = api.get(image["url"], HTTP_ACCEPT="image/avif,image/webp,*/*")
    assert shown["Content-Type"] == "image/png" and shown["Content-Disposition"].startswith("inline;")
    assert api.get(image["url"], HTTP_ACCEPT="image/png").status_code == 200  # an <img>'s Accept is fine
    got = api.get(pdf["url"])
    assert got["Content-Type"] == "application/pdf" and got["Content-Disposition"].startswith("attachment;")


def test_removing_an_unsent_upload_deletes_its_bytes_and_a_sent_one_is_409(
    api, chat, turns_not_enqueued, django_capture_on_commit_callbacks
):
    body = upload(api, chat, image_bytes("PNG"), "p.png").json()
    row = Attachment.objects.get(pk=body["id"])
    keys = [row.key, row.thumbnail_key, row.model_key]
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(body["url"]).status_code == 204
    assert not Attachment.objects.exists() and not any(attachment_storage().exists(k) for k in keys)
    sent = upload(api, chat, b"kept", "k.txt").json()
    api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "x", "attachments": [sent["id"]]}, format="json")
    assert api.delete(sent["url"]).status_code == 409


def test_uploads_never_sent_are_purged_with_their_bytes_after_the_window(
    api, chat, turns_not_enqueued, settings, django_capture_on_commit_callbacks
):
    settings.MOTHERSHIP_ATTACHMENT_UNSENT_HOURS = 24
    old = upload(api, chat, b"old draft", "o.txt").json()
    sent = upload(api, chat, b"sent", "s.txt").json()
    fresh = upload(api, chat, b"new draft", "n.txt").json()
    api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "x", "attachments": [sent["id"]]}, format="json")
    day_ago = timezone.now() - datetime.timedelta(hours=25)
    Attachment.objects.filter(pk__in=[old["id"], sent["id"]]).update(created_at=day_ago)
    old_key = Attachment.objects.get(pk=old["id"]).key
    with django_capture_on_commit_callbacks(execute=True):  # the bytes go once the rows' delete commits
        assert attachments_purge_unsent() == 1
    assert set(map(str, Attachment.objects.values_list("pk", flat=True))) == {sent["id"], fresh["id"]}
    assert not attachment_storage().exists(old_key)


def test_an_uploaded_text_file_keeps_its_hash_and_a_long_one_is_cut_for_the_model(api, chat, settings):
    settings.MOTHERSHIP_ATTACHMENT_TEXT_CHARS = 10
    data = b"0123456789abcdef"
    row = Attachment.objects.get(pk=upload(api, chat, data, "long.txt").json()["id"])
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert (row.text, row.text_truncated, row.size) == ("0123456789", True, 16)


def test_a_pdfs_text_and_pages_are_read_at_upload(api, chat):
    row = Attachment.objects.get(pk=upload(api, chat, pdf_bytes("Revenue grew", pages=3), "q.pdf").json()["id"])
    assert row.pages == 3 and "Revenue grew 2" in row.text and row.tokens >= 3 * 1500


def test_a_storage_that_cannot_be_written_is_503_and_records_nothing(api, chat, settings, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(blocked)}},
    }
    answer = upload(api, chat, b"words", "w.txt")
    assert answer.status_code == 503 and answer.json()["code"] == "storage_unavailable"
    assert not Attachment.objects.exists()


def test_a_file_gone_from_storage_is_404_not_500(api, chat):
    body = upload(api, chat, b"words", "w.txt").json()
    attachment_storage().delete(Attachment.objects.get(pk=body["id"]).key)
    assert api.get(body["url"]).status_code == 404


def test_text_with_more_than_one_control_character_in_a_hundred_is_415_and_a_few_escapes_pass(api, chat):
    # Tab, line feed, form feed and carriage return are text; ESC, BEL and the rest count as binary.
    lines = b"col\tvalue\r\n" * 99
    assert upload(api, chat, lines + b"\x1b[1mbold\x1b[0m\n", "few.txt").status_code == 201
    answer = upload(api, chat, lines + b"\x07" * 20, "bells.txt")
    assert answer.status_code == 415 and answer.json()["code"] == "unsupported_type"


def test_an_images_colour_profile_is_kept_so_its_colours_do_not_shift(api, chat):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(out, "JPEG", icc_profile=profile, exif=Image.Exif().tobytes())
    body = upload(api, chat, out.getvalue(), "wide.jpg").json()
    assert Image.open(io.BytesIO(stored(body["id"]))).info.get("icc_profile") == profile
