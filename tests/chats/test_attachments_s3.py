"""Attachments in an S3 bucket: the API against a real S3-compatible server (moto's, as a process),
every object checked by listing the bucket with boto3, not through the app's storage."""

from __future__ import annotations

import datetime
import io
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image
from storages.backends.s3 import S3Storage

from chats.attachments import attachments_purge_unsent
from chats.attachments.storage import attachment_storage
from chats.models import Attachment
from mothership.infra.attachment_storage import attachments_storage
from tests.support.files import image_bytes, pdf_bytes

pytestmark = pytest.mark.django_db


def upload(api, chat, data: bytes, name: str):
    return api.post(f"/api/mothership/chats/{chat.id}/attachments", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def body_of(answer) -> bytes:
    return b"".join(answer.streaming_content)


def test_the_settings_fixture_switches_the_attachments_storage_to_the_bucket_and_back(s3_server, settings):
    # Django's setting_changed receiver drops the cached storages: each change is seen at once.
    folder = attachment_storage()
    assert not isinstance(folder, S3Storage)
    settings.STORAGES = {**settings.STORAGES, "attachments": s3_server.storage(prefix="switch")}
    assert isinstance(attachment_storage(), S3Storage) and attachment_storage().bucket_name == s3_server.bucket
    settings.STORAGES = {**settings.STORAGES, "attachments": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    assert type(attachment_storage()).__name__ == "InMemoryStorage"


@pytest.mark.parametrize(
    ("name", "data", "content_type", "renditions"),
    [
        ("notes.txt", b"plain words\n" * 100, "text/plain", {"file"}),
        ("report.pdf", pdf_bytes("Revenue grew", pages=2), "application/pdf", {"file"}),
        ("photo.png", image_bytes("PNG", size=(640, 480)), "image/png", {"file", "thumbnail", "model"}),
    ],
)
def test_an_upload_lands_in_the_bucket_and_downloads_byte_for_byte(
    api, chat, s3_attachments, name, data, content_type, renditions
):
    server, prefix = s3_attachments
    answer = upload(api, chat, data, name)
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["content_type"] == content_type
    assert server.keys(prefix) == {f"{prefix}/{chat.id}/{body['id']}/{r}" for r in renditions}
    stored = server.client().get_object(Bucket=server.bucket, Key=f"{prefix}/{chat.id}/{body['id']}/file")["Body"].read()
    got = api.get(body["url"])
    assert got.status_code == 200 and got["Content-Type"].startswith(content_type)
    assert body_of(got) == stored and len(stored) == body["size"]
    if content_type != "image/png":
        assert stored == data  # text and PDFs are kept as sent; an image is re-encoded without its metadata


def test_an_images_thumbnail_comes_from_the_bucket(api, chat, s3_attachments):
    body = upload(api, chat, image_bytes("JPEG", size=(900, 600)), "photo.jpg").json()
    thumb = api.get(body["thumbnail_url"])
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(body_of(thumb))).size == (320, 213)


def test_a_refused_upload_leaves_no_object_in_the_bucket(api, chat, s3_attachments):
    server, prefix = s3_attachments
    assert upload(api, chat, image_bytes("PNG")[:40], "cut.png").status_code == 400
    assert upload(api, chat, b"MZ\x90\x00" + bytes(range(256)), "setup.exe").status_code == 415
    assert server.keys(prefix) == set()


def test_discarding_an_upload_deletes_its_objects_after_commit(api, chat, s3_attachments, django_capture_on_commit_callbacks):
    server, prefix = s3_attachments
    body = upload(api, chat, image_bytes("PNG"), "p.png").json()
    kept = upload(api, chat, b"kept", "k.txt").json()
    assert len(server.keys(prefix)) == 4
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert api.delete(body["url"]).status_code == 204
    assert len(server.keys(prefix)) == 4  # nothing leaves the bucket before the row's delete is committed
    for callback in callbacks:
        callback()
    assert server.keys(prefix) == {f"{prefix}/{chat.id}/{kept['id']}/file"}
    assert api.get(body["url"]).status_code == 404


def test_the_unsent_purge_deletes_the_objects_and_keeps_the_sent_ones(
    api, chat, s3_attachments, turns_not_enqueued, settings, django_capture_on_commit_callbacks
):
    server, prefix = s3_attachments
    settings.MOTHERSHIP_ATTACHMENT_UNSENT_HOURS = 24
    old = upload(api, chat, image_bytes("PNG"), "old.png").json()
    sent = upload(api, chat, b"sent", "s.txt").json()
    api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "x", "attachments": [sent["id"]]}, format="json")
    Attachment.objects.update(created_at=timezone.now() - datetime.timedelta(hours=25))
    with django_capture_on_commit_callbacks(execute=True):
        assert attachments_purge_unsent() == 1
    assert server.keys(prefix) == {f"{prefix}/{chat.id}/{sent['id']}/file"}
    assert api.get(old["url"]).status_code == 404 and body_of(api.get(sent["url"])) == b"sent"


def test_purging_a_chat_from_the_trash_deletes_its_objects_and_a_trashed_chat_keeps_them(
    api, chat, workspace, s3_attachments, turns_not_enqueued, django_capture_on_commit_callbacks
):
    from mothership.services import trash_purge
    from tests import factories

    server, prefix = s3_attachments
    other = factories.ChatFactory(workspace=workspace, title="kept")
    gone = upload(api, chat, image_bytes("PNG"), "p.png").json()
    api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "x", "attachments": [gone["id"]]}, format="json")
    upload(api, chat, b"never sent", "draft.txt")
    stays = upload(api, other, b"other chat", "o.txt").json()
    assert api.delete(f"/api/mothership/chats/{chat.id}").status_code == 204
    assert len(server.keys(f"{prefix}/{chat.id}/")) == 4  # in the trash: restorable, files and all
    with django_capture_on_commit_callbacks(execute=True):
        assert trash_purge(chat_ids=[chat.id])["attachments"] == 2
    assert server.keys(prefix) == {f"{prefix}/{other.id}/{stays['id']}/file"}


def test_an_endpoint_without_a_bucket_stops_the_app_at_start_naming_the_setting(tmp_path):
    with pytest.raises(
        ImproperlyConfigured, match="MOTHERSHIP_ATTACHMENT_S3_ENDPOINT_URL set without MOTHERSHIP_ATTACHMENT_S3_BUCKET"
    ):
        attachments_storage(bucket="", endpoint_url="http://127.0.0.1:9000", directory=str(tmp_path))
    with pytest.raises(ImproperlyConfigured, match="must be an http"):
        attachments_storage(bucket="b", endpoint_url="127.0.0.1:9000")
    started = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**_env_without_s3(), "MOTHERSHIP_ATTACHMENT_S3_REGION": "eu-west-1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "MOTHERSHIP_ATTACHMENT_S3_REGION set without MOTHERSHIP_ATTACHMENT_S3_BUCKET" in started.stderr


def _env_without_s3() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MOTHERSHIP_ATTACHMENT_S3_")}
