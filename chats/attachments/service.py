"""Uploads: checked, sniffed, re-encoded where an image, stored, recorded; discarded; purged."""

from __future__ import annotations

import datetime
import hashlib
import logging
import math
import os
import re
import unicodedata
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from chats.attachments import storage
from chats.attachments.images import BadImage, renditions
from chats.attachments.kinds import IMAGE_TYPES, SUPPORTED, TextCheck, sniff, text_type
from chats.attachments.pdf import TOKENS_PER_PAGE, BadPdf, pdf_text
from chats.models import Attachment, Chat

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024
CHARS_PER_TOKEN = 4  # as streams.providers.base estimates text


class AttachmentRefused(Exception):
    """An upload or a send's attachment refused, with a sentence for people and its HTTP status."""

    status = 400

    def __init__(self, detail: str, *, status: int | None = None, code: str = "attachment_refused"):
        super().__init__(detail)
        self.detail = detail
        self.code = code
        if status is not None:
            self.status = status


def size_words(size: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{size} bytes"


def too_large(size: int | None = None) -> AttachmentRefused:
    limit = settings.MOTHERSHIP_ATTACHMENT_MAX_BYTES
    said = f"The file is {size:,} bytes; " if size else "The file is too large; "
    return AttachmentRefused(f"{said}a file may be {limit:,} bytes ({size_words(limit)}) at most.", status=413, code="too_large")


def clean_name(raw) -> str:
    """The name as shown and downloaded: its last path part, no control characters, 255 at most."""
    name = os.path.basename(str(raw or "").replace("\\", "/"))
    name = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] != "C").strip(" .")
    name = re.sub(r"\s+", " ", name)
    if len(name) > 255:
        stem, ext = os.path.splitext(name)
        name = stem[: 255 - len(ext[:20])] + ext[:20]
    return name or "file"


def quota_check(*, user, adding: int = 0) -> None:
    """``AttachmentRefused`` (413) when ``user`` keeps as many files, or as many bytes, as allowed."""
    if user is None:
        return
    kept = Attachment.objects.filter(uploaded_by=user).aggregate(n=Count("id"), size=Sum("size"))
    files, size = kept["n"] or 0, kept["size"] or 0
    if files >= settings.MOTHERSHIP_ATTACHMENT_QUOTA_FILES:
        raise AttachmentRefused(
            f"You keep {files:,} files, the most allowed; delete conversations with files you no longer need.",
            status=413,
            code="quota_exceeded",
        )
    limit = settings.MOTHERSHIP_ATTACHMENT_QUOTA_BYTES
    if size + adding > limit:
        raise AttachmentRefused(
            f"Your files use {size_words(size)} of your {size_words(limit)}; this one ({size_words(adding)}) "
            "does not fit. Delete conversations with files you no longer need.",
            status=413,
            code="quota_exceeded",
        )


def _scan(upload, *, keep: int):
    """One pass over the upload's bytes: their SHA-256 and size, the head, and whether it is text."""
    digest, size, head = hashlib.sha256(), 0, b""
    text = TextCheck(keep=keep)
    upload.seek(0)
    for chunk in upload.chunks(CHUNK):
        if len(head) < 64:
            head += chunk[: 64 - len(head)]
        digest.update(chunk)
        size += len(chunk)
        if sniff(head) is None:  # an image or a PDF is not read as text
            text.feed(chunk)
    return digest.hexdigest(), size, head, text


def attachment_upload(*, chat: Chat, user, file) -> Attachment:
    """Store ``file`` (an uploaded file, read in chunks) as an attachment of ``chat``, not yet sent.

    Refused (``AttachmentRefused``): empty (400), past ``MOTHERSHIP_ATTACHMENT_MAX_BYTES`` or the
    uploader's quota (413), a type other than those supported, by its bytes (415), an image or a
    PDF that cannot be read (400).
    """
    name = clean_name(getattr(file, "name", ""))
    if file.size == 0:
        raise AttachmentRefused(f"{name} is empty (0 bytes); there is nothing to attach.", code="empty")
    if file.size > settings.MOTHERSHIP_ATTACHMENT_MAX_BYTES:
        raise too_large(file.size)
    quota_check(user=user, adding=file.size)
    sha256, size, head, text = _scan(file, keep=settings.MOTHERSHIP_ATTACHMENT_TEXT_CHARS)
    found = sniff(head)
    attachment_id = uuid.uuid4()
    fields: dict = {"sha256": sha256}
    keys: list[str] = []

    def key(rendition: str) -> str:
        return storage.key_for(chat_id=chat.pk, attachment_id=attachment_id, rendition=rendition)

    try:
        if found is not None and found.kind == "image":
            file.seek(0)
            try:
                images = renditions(
                    file, fmt=IMAGE_TYPES[found.content_type], max_pixels=settings.MOTHERSHIP_ATTACHMENT_MAX_PIXELS
                )
            except BadImage as exc:
                raise AttachmentRefused(f"{name}: {exc}", code="bad_image") from None
            keys.append(stored := storage.store_bytes(key("file"), images.stored))
            keys.append(thumbnail := storage.store_bytes(key("thumbnail"), images.thumbnail))
            keys.append(model := storage.store_bytes(key("model"), images.model))
            fields.update(
                kind=Attachment.Kind.IMAGE,
                content_type=found.content_type,
                size=len(images.stored),
                sha256=hashlib.sha256(images.stored).hexdigest(),
                key=stored,
                thumbnail_key=thumbnail,
                model_key=model,
                model_content_type=images.model_content_type,
                width=images.width,
                height=images.height,
                tokens=images.tokens,
            )
        elif found is not None:  # a PDF
            file.seek(0)
            try:
                extracted = pdf_text(file, keep=settings.MOTHERSHIP_ATTACHMENT_TEXT_CHARS)
            except BadPdf as exc:
                raise AttachmentRefused(f"{name}: {exc}", code="bad_pdf") from None
            keys.append(stored := storage.store_file(key("file"), file))
            fields.update(
                kind=Attachment.Kind.PDF,
                content_type=found.content_type,
                size=size,
                key=stored,
                pages=extracted.pages,
                text=extracted.text,
                text_truncated=extracted.truncated,
                tokens=extracted.pages * TOKENS_PER_PAGE + math.ceil(len(extracted.text) / CHARS_PER_TOKEN),
            )
        elif text.finish():
            keys.append(stored := storage.store_file(key("file"), file))
            fields.update(
                kind=Attachment.Kind.TEXT,
                content_type=text_type(name),
                size=size,
                key=stored,
                text=text.text,
                text_truncated=text.truncated,
                tokens=math.ceil(len(text.text) / CHARS_PER_TOKEN),
            )
        else:
            raise AttachmentRefused(
                f"{name} is not a type that can be attached; attach {SUPPORTED}.", status=415, code="unsupported_type"
            )
        return _record(chat=chat, user=user, attachment_id=attachment_id, name=name, fields=fields)
    except storage.StorageUnavailable as exc:
        storage.delete_files(keys)
        raise AttachmentRefused(str(exc), status=503, code="storage_unavailable") from exc
    except BaseException:
        storage.delete_files(keys)  # nothing of a refused upload stays behind
        raise


@transaction.atomic
def _record(*, chat: Chat, user, attachment_id, name: str, fields: dict) -> Attachment:
    """The row, with the quota checked again under the uploader's row lock (uploads at once count one after another)."""
    if user is not None:
        get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk").first()
        quota_check(user=user, adding=fields["size"])
    return Attachment.objects.create(id=attachment_id, chat=chat, uploaded_by=user, name=name, **fields)


@transaction.atomic
def attachment_discard(*, attachment: Attachment) -> None:
    """Remove an upload before it is sent (its bytes too); a sent attachment stays with its messages.

    The delete is conditional: a send that names the file at the same moment either lands first
    (then this refuses) or waits for it (then the send is told the file is gone)."""
    unsent = Attachment.objects.filter(pk=attachment.pk, sent_at__isnull=True)
    attachments_files_delete_on_commit(attachments=unsent)  # a refusal below rolls this back too
    if not unsent.delete()[0]:
        raise AttachmentRefused("This file was sent with a message; it stays with the conversation.", status=409, code="sent")


def attachments_files_delete_on_commit(*, attachments) -> int:
    """Delete the bytes of ``attachments`` (a queryset of rows this transaction deletes) once it commits.

    Read before the rows go; the number of attachments. A rollback keeps rows and bytes both.
    """
    rows = list(attachments.values_list("key", "thumbnail_key", "model_key"))
    keys = [key for row in rows for key in row if key]
    if keys:
        transaction.on_commit(lambda: storage.delete_files(keys))
    return len(rows)


PURGE_BATCH = 500


def attachments_purge_unsent(*, now: datetime.datetime | None = None, dry_run: bool = False) -> int:
    """Uploads no message named within ``MOTHERSHIP_ATTACHMENT_UNSENT_HOURS``: rows and bytes deleted (in batches).
    The number purged (``dry_run``: the number that would be)."""
    cutoff = (now or timezone.now()) - datetime.timedelta(hours=settings.MOTHERSHIP_ATTACHMENT_UNSENT_HOURS)
    if dry_run:
        return Attachment.objects.filter(sent_at__isnull=True, created_at__lt=cutoff).count()
    purged = 0
    while True:
        with transaction.atomic():
            # Locked, then read: a send that names one of them waits, and finds it gone (never its bytes deleted under it).
            ids = list(
                Attachment.objects.select_for_update()
                .filter(sent_at__isnull=True, created_at__lt=cutoff)
                .values_list("pk", flat=True)[:PURGE_BATCH]
            )
            stale = Attachment.objects.filter(pk__in=ids)
            attachments_files_delete_on_commit(attachments=stale)
            purged += stale.delete()[1].get(Attachment._meta.label, 0)
        if len(ids) < PURGE_BATCH:
            if purged:
                logger.info(
                    "purged %d uploads no message named within %g hours", purged, settings.MOTHERSHIP_ATTACHMENT_UNSENT_HOURS
                )
            return purged
