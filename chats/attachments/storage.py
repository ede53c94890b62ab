"""The ``attachments`` storage (settings.STORAGES): a folder by default, an S3 bucket when set.

Keys are ``<chat id>/<attachment id>/<rendition>``: nothing a person chose becomes a path.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, storages

logger = logging.getLogger(__name__)


def attachment_storage() -> Storage:
    return storages["attachments"]


def key_for(*, chat_id, attachment_id, rendition: str) -> str:
    return f"{chat_id}/{attachment_id}/{rendition}"


class StorageUnavailable(Exception):
    """The storage refused or could not be reached (a full disk, a bucket away): 503, and nothing is recorded."""


@contextmanager
def _reaching_storage(action: str, key: str):
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as exc:  # OSError of a folder, botocore's errors of a bucket: one answer either way
        logger.warning("attachments storage: %s %s failed: %s", action, key, exc)
        raise StorageUnavailable(f"The file storage is not available ({action}); try again shortly.") from exc


def store_file(key: str, file) -> str:
    """``file`` (a file object, read in chunks by the storage) saved under ``key``; the key it got."""
    file.seek(0)
    with _reaching_storage("save", key):
        return attachment_storage().save(key, File(file, name=key))


def store_bytes(key: str, data: bytes) -> str:
    with _reaching_storage("save", key):
        return attachment_storage().save(key, ContentFile(data, name=key))


def open_file(key: str):
    """The stored file, open for reading; ``FileNotFoundError`` when it is gone, ``StorageUnavailable`` when unreachable."""
    with _reaching_storage("open", key):
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
