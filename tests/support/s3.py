"""A real S3-compatible server for the attachments' bucket: moto's server mode, as its own process.

Loaded as a plugin by tests/conftest.py: ``s3_server`` is one server per test session (started,
waited for, a bucket made with boto3, stopped at the end). Credentials are fake but present (boto3
signs every request, as it would against AWS).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mothership-test", "AWS_SECRET_ACCESS_KEY": "mothership-test-secret"}
REGION = "us-east-1"


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint_url: str
    bucket: str
    log_path: Path

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, prefix: str = "") -> set[str]:
        """Every object's key in the bucket under ``prefix`` (listed by the server, not by the app)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def env(self, *, prefix: str) -> dict[str, str]:
        """What a process of the app needs to keep attachments in this bucket, under ``prefix``."""
        return {
            **CREDENTIALS,
            "MOTHERSHIP_ATTACHMENT_S3_BUCKET": self.bucket,
            "MOTHERSHIP_ATTACHMENT_S3_ENDPOINT_URL": self.endpoint_url,
            "MOTHERSHIP_ATTACHMENT_S3_REGION": REGION,
            "MOTHERSHIP_ATTACHMENT_S3_PREFIX": prefix,
        }

    def storage(self, *, prefix: str) -> dict:
        """``STORAGES["attachments"]`` for this bucket, as settings.py builds it from ``env``."""
        from mothership.infra.attachment_storage import attachments_storage

        return attachments_storage(bucket=self.bucket, endpoint_url=self.endpoint_url, region=REGION, prefix=prefix)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_s3_server(*, timeout: float = 30) -> S3Server:
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="mothership-s3-")) / "moto.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, **CREDENTIALS},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(process, f"http://127.0.0.1:{port}", f"mothership-test-{uuid.uuid4().hex[:8]}", log_path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(server.endpoint_url + "/moto-api/", timeout=1).status_code < 500:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the S3 server did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.1)
    server.client().create_bucket(Bucket=server.bucket)
    return server


@pytest.fixture(scope="session")
def s3_server(monkeypatch_session_env):
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def monkeypatch_session_env():
    """The fake credentials in this process's environment for the session (boto3 reads them there)."""
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def s3_attachments(s3_server, settings):
    """This test's attachments in the bucket, under a prefix of its own: ``(server, prefix)``."""
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    settings.STORAGES = {**settings.STORAGES, "attachments": s3_server.storage(prefix=prefix)}
    yield s3_server, prefix
