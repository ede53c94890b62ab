"""Files belong to their chat: kept in the trash (a restore brings them back), deleted with it when
it is purged (or discarded unused), listed by the exports, left out by an import with a note; the
unsent-upload purge runs on the beat and in ``manage.py purge_trash``."""

from __future__ import annotations

import datetime
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from chats.attachments.storage import attachment_storage
from chats.models import Attachment, Chat
from chats.services import chats_discard_empty
from mothership.celery import beat_schedule
from mothership.services import trash_purge
from mothership.tasks import purge_trash
from tests import factories
from tests.support.files import image_bytes, pdf_bytes

pytestmark = pytest.mark.django_db


def upload(api, chat, data: bytes, name: str) -> dict:
    answer = api.post(
        f"/api/mothership/chats/{chat.id}/attachments", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )
    assert answer.status_code == 201, answer.json()
    return answer.json()


def send(api, chat, content: str, *files: dict) -> None:
    answer = api.post(
        f"/api/mothership/chats/{chat.id}/messages", {"content": content, "attachments": [f["id"] for f in files]}, format="json"
    )
    assert answer.status_code == 201, answer.json()


def files_of(*chats) -> list[str]:
    rows = Attachment.objects.filter(chat__in=chats).values_list("key", "thumbnail_key", "model_key")
    return [key for row in rows for key in row if key]


def on_disk(keys) -> list[bool]:
    return [attachment_storage().exists(key) for key in keys]


@pytest.fixture
def chat_with_files(api, chat, turns_not_enqueued):
    """A chat with an image and a PDF sent, and a text file uploaded but not sent yet."""
    photo, report = upload(api, chat, image_bytes("PNG"), "photo.png"), upload(api, chat, pdf_bytes(), "report.pdf")
    send(api, chat, "see these", photo, report)
    upload(api, chat, b"a draft", "draft.txt")
    return chat


# --- The trash ---------------------------------------------------------------------------------


def test_a_chat_in_the_trash_keeps_its_files_and_a_restore_serves_them_again(api, chat_with_files):
    keys = files_of(chat_with_files)
    photo = Attachment.objects.get(chat=chat_with_files, name="photo.png")
    url = f"/api/mothership/chats/{chat_with_files.id}/attachments/{photo.pk}"

    assert api.delete(f"/api/mothership/chats/{chat_with_files.id}").status_code == 204
    assert api.get(url).status_code == 404  # a trashed chat is gone for its members …
    assert len(keys) == 5 and all(on_disk(keys))  # … but nothing of it is deleted

    assert api.post(f"/api/mothership/chats/{chat_with_files.id}/restore").status_code == 200
    assert api.get(url).status_code == 200 and all(on_disk(keys))


def test_purging_the_trash_deletes_the_files_after_commit_and_leaves_other_chats_files(
    api, chat_with_files, workspace, settings, django_capture_on_commit_callbacks
):
    settings.MOTHERSHIP_TRASH_DAYS = 30
    other = factories.ChatFactory(workspace=workspace, title="other")
    upload(api, other, b"other's", "o.txt")
    keys, kept = files_of(chat_with_files), files_of(other)
    Chat.objects.filter(pk=chat_with_files.pk).update(deleted_at=timezone.now() - datetime.timedelta(days=31))

    with django_capture_on_commit_callbacks() as callbacks:
        outcome = trash_purge()
        assert all(on_disk(keys))  # the rows' delete is not committed yet: the bytes stay until it is

    assert (outcome["chats"], outcome["attachments"]) == (1, 3)
    for callback in callbacks:
        callback()
    assert not any(on_disk(keys)) and all(on_disk(kept))
    assert not Attachment.objects.filter(pk__in=[k.split("/")[1] for k in keys]).exists()


def test_the_purge_trash_command_deletes_files_too_and_its_dry_run_counts_them(
    api, chat_with_files, settings, django_capture_on_commit_callbacks
):
    settings.MOTHERSHIP_TRASH_DAYS = 30
    keys = files_of(chat_with_files)
    Chat.objects.filter(pk=chat_with_files.pk).update(deleted_at=timezone.now() - datetime.timedelta(days=31))

    out = io.StringIO()
    call_command("purge_trash", "--dry-run", "--json", stdout=out)
    assert (json.loads(out.getvalue())["attachments"], all(on_disk(keys))) == (3, True)

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_trash", stdout=out)
    assert "3 attached files" in out.getvalue() and not any(on_disk(keys))


def test_a_chat_left_empty_is_discarded_with_the_files_uploaded_to_it(api, chat, user, django_capture_on_commit_callbacks):
    Chat.objects.filter(pk=chat.pk).update(title_set=False, created_by=user)
    upload(api, chat, image_bytes("PNG"), "p.png")  # uploaded, then the page left before any send
    keys = files_of(chat)
    with django_capture_on_commit_callbacks(execute=True):
        assert chats_discard_empty(user=user, workspace_id=chat.workspace_id) == 1
    assert len(keys) == 3 and not any(on_disk(keys))


# --- The unsent purge on the beat and in the command ------------------------------------------


def test_the_beats_purge_task_also_purges_uploads_never_sent(api, chat_with_files, settings, django_capture_on_commit_callbacks):
    settings.MOTHERSHIP_ATTACHMENT_UNSENT_HOURS = 24
    entry = beat_schedule()["trash-purge"]
    assert entry["task"] == purge_trash.name
    draft = Attachment.objects.get(chat=chat_with_files, name="draft.txt")
    Attachment.objects.update(created_at=timezone.now() - datetime.timedelta(hours=25))

    with django_capture_on_commit_callbacks(execute=True):
        outcome = purge_trash.apply().get()  # the task as a worker runs it, in this process

    assert outcome["unsent_attachments"] == 1
    assert set(Attachment.objects.values_list("name", flat=True)) == {"photo.png", "report.pdf"}
    assert not attachment_storage().exists(draft.key)


def test_the_purge_trash_command_purges_uploads_never_sent_and_its_dry_run_only_counts(
    api, chat_with_files, settings, django_capture_on_commit_callbacks
):
    settings.MOTHERSHIP_ATTACHMENT_UNSENT_HOURS = 24
    draft = Attachment.objects.get(chat=chat_with_files, name="draft.txt")
    Attachment.objects.filter(pk=draft.pk).update(created_at=timezone.now() - datetime.timedelta(hours=25))

    out = io.StringIO()
    call_command("purge_trash", "--dry-run", stdout=out)
    assert "1 uploads no message named within 24 hours" in out.getvalue() and Attachment.objects.filter(pk=draft.pk).exists()

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_trash", "--json", stdout=out)
    assert json.loads(out.getvalue())["unsent_attachments"] == 1
    assert not Attachment.objects.filter(pk=draft.pk).exists() and not attachment_storage().exists(draft.key)
    assert Attachment.objects.filter(chat=chat_with_files).count() == 2  # the sent ones stay


# --- Export and import -------------------------------------------------------------------------


def test_the_json_export_lists_each_messages_files_without_their_bytes(api, chat_with_files):
    body = json.loads(api.get(f"/api/mothership/chats/{chat_with_files.id}/export?format=json").content)
    [question] = [m for m in body["messages"] if m["role"] == "user"]
    photo = Attachment.objects.get(name="photo.png")
    report = Attachment.objects.get(name="report.pdf")
    assert question["attachments"] == [
        {
            "id": str(a.pk),
            "name": a.name,
            "content_type": a.content_type,
            "size": a.size,
            "sha256": a.sha256,
            "kind": a.kind,
        }
        for a in (photo, report)
    ]
    assert (question["attachments"][1]["kind"], question["attachments"][1]["content_type"]) == ("pdf", "application/pdf")
    assert all(m["attachments"] == [] for m in body["messages"] if m["role"] != "user")
    assert "draft.txt" not in json.dumps(body)  # an upload no message named is no part of the conversation


def test_the_markdown_export_lists_the_files_under_their_message(api, chat_with_files):
    text = api.get(f"/api/mothership/chats/{chat_with_files.id}/export?format=markdown").content.decode()
    photo = Attachment.objects.get(name="photo.png")
    pdf = Attachment.objects.get(name="report.pdf")
    line = f"Attached: photo.png ({photo.size} bytes), report.pdf ({pdf.size} bytes)"
    assert f"## User\n\nsee these\n\n{line}\n" in text
    assert "draft.txt" not in text


def test_importing_an_export_with_files_brings_the_messages_and_a_note_not_the_files(api, chat_with_files, workspace):
    exported = api.get(f"/api/mothership/chats/{chat_with_files.id}/export?format=json").content

    answer = api.post(
        f"/api/mothership/workspaces/{workspace.id}/import",
        {"file": SimpleUploadedFile("chat.json", exported)},
        format="multipart",
    )

    assert answer.status_code == 201, answer.json()
    assert answer.json()["notes"] == ["2 attached files were not imported."]
    [copy_id] = answer.json()["chats"]
    assert not Attachment.objects.filter(chat_id=copy_id).exists()
    assert Chat.objects.get(pk=copy_id).messages.get(role="user").content == "see these"


def test_an_import_whose_attachments_are_not_a_list_is_a_400_naming_where(api, chat_with_files, workspace):
    exported = json.loads(api.get(f"/api/mothership/chats/{chat_with_files.id}/export?format=json").content)
    exported["messages"][0]["attachments"] = "photo.png"
    answer = api.post(
        f"/api/mothership/workspaces/{workspace.id}/import",
        {"file": SimpleUploadedFile("chat.json", json.dumps(exported).encode())},
        format="multipart",
    )
    assert answer.status_code == 400 and "messages[0].attachments: not a list" in answer.json()["detail"]
