"""The ``attachments`` storage (settings.STORAGES): a folder by default, an S3 bucket when set.

Keys are ``<chat id>/<attachment id>/<rendition>``: nothing a person chose becomes a path.
"""

from __future__ import annotations

import logging

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, storages

CHUNK = 256 * 1024

logger = logging.getLogger(__name__)


def attachment_storage() -> Storage:
    return storages["attachments"]


def key_for(*, chat_id, attachment_id, rendition: str) -> str:
    return f"{chat_id}/{attachment_id}/{rendition}"


def store_file(key: str, file) -> str:
    """``file`` (a file object, read in chunks by the storage) saved under ``key``; the key it got."""
    file.seek(0)
    return attachment_storage().save(key, File(file, name=key))


def store_bytes(key: str, data: bytes) -> str:
    return attachment_storage().save(key, ContentFile(data, name=key))


def open_file(key: str):
    return attachment_storage().open(key, "rb")


def read_bytes(key: str) -> bytes:
    with open_file(key) as f:
        return f.read()


def delete_files(keys) -> int:
    """Each key's file deleted (one already gone is not an error); the number that could not be.

    Called after the rows are gone: a storage that fails (a bucket unreachable) leaves those bytes
    behind, logged by key, and the other deletions still happen.
    """
    storage = attachment_storage()
    failed = 0
    for key in keys:
        if not key:
            continue
        try:
            storage.delete(key)
        except Exception as exc:  # boto3's and the file system's errors alike
            failed += 1
            logger.warning("attachment file %s could not be deleted from storage: %s", key, exc)
    return failed
