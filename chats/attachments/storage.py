"""The ``attachments`` storage (settings.STORAGES): a folder by default, an S3 bucket when set.

Keys are ``<chat id>/<attachment id>/<rendition>``: nothing a person chose becomes a path.
"""

from __future__ import annotations

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, storages

CHUNK = 256 * 1024


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


def delete_files(keys) -> None:
    """Each key's file deleted (one already gone is not an error)."""
    storage = attachment_storage()
    for key in keys:
        if key:
            storage.delete(key)
