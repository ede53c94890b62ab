"""``STORAGES["attachments"]`` from the environment: a folder, or an S3-compatible bucket.

A bucket's settings given by halves (an endpoint, a region or a prefix without a bucket) stop the
app at start with a sentence naming what is missing: otherwise files would land in the local
folder of one web process while the operator believes they are in the bucket.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

S3_BACKEND = "storages.backends.s3.S3Storage"
SINGLE_PUT_MAX = 5 * 1024**3  # S3's largest object in one PUT


def attachments_storage(
    *, bucket: str, endpoint_url: str = "", region: str = "", prefix: str | None = None, directory: str = ""
) -> dict:
    """The storage entry; ``prefix`` None when MOTHERSHIP_ATTACHMENT_S3_PREFIX is not set (the default applies)."""
    if not bucket:
        given = [
            name
            for name, value in (
                ("MOTHERSHIP_ATTACHMENT_S3_ENDPOINT_URL", endpoint_url),
                ("MOTHERSHIP_ATTACHMENT_S3_REGION", region),
                ("MOTHERSHIP_ATTACHMENT_S3_PREFIX", prefix),
            )
            if value
        ]
        if given:
            raise ImproperlyConfigured(
                f"{' and '.join(given)} set without MOTHERSHIP_ATTACHMENT_S3_BUCKET: name the bucket to keep attachments in "
                "S3, or unset them to keep attachments in the folder MOTHERSHIP_ATTACHMENT_DIR."
            )
        return {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": directory, "base_url": None}}
    if endpoint_url and (urlsplit(endpoint_url).scheme not in ("http", "https") or not urlsplit(endpoint_url).netloc):
        raise ImproperlyConfigured(
            f"MOTHERSHIP_ATTACHMENT_S3_ENDPOINT_URL must be an http(s) URL such as https://s3.example.com, got {endpoint_url!r}"
        )
    from boto3.s3.transfer import TransferConfig

    return {
        "BACKEND": S3_BACKEND,
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "location": (prefix if prefix is not None else "attachments").strip("/"),
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
            # One PUT streamed from the file, in the request's thread: boto3's default (ten threads,
            # an 8 MB part each held in memory) grew the web process by the file's size (docs/attachments.md, "Memory and time").
            "transfer_config": TransferConfig(use_threads=False, multipart_threshold=SINGLE_PUT_MAX),
            # A download past 1 MB is staged on disk, not in memory (django-storages' default: all in memory).
            "max_memory_size": 1024 * 1024,
        },
    }
