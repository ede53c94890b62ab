"""Attachments in an S3 bucket, end to end: the real server and worker processes, both told the
bucket by their environment, against a real S3-compatible server (moto's, as a process). A file
uploaded over HTTP is sent with a message, the local model names it (it read the row the worker
loaded), and the file downloads back byte for byte from the bucket."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import websockets.sync.client

from chats import services as chat_services
from tests.support import processes
from tests.support.files import pdf_bytes
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def s3_app(s3_server, django_db_setup, django_db_blocker, tmp_path_factory):
    """(web base URL, bucket server, prefix): a server and a worker on a queue of their own, both on the bucket."""
    tmp = tmp_path_factory.mktemp("s3-app")
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    queue = f"s3-{uuid.uuid4().hex[:8]}"
    env = {**s3_server.env(prefix=prefix), "MOTHERSHIP_CELERY_QUEUE": queue}
    worker = processes.start_worker(tmp, name="s3-worker", concurrency=2, **env)
    web, base = processes.start_server(tmp, name="s3-web", **env)
    yield base, s3_server, prefix
    web.stop()
    worker.stop()


def test_an_upload_sent_with_a_message_is_named_by_the_model_and_downloads_byte_for_byte(s3_app, workspace, token):
    base, server, prefix = s3_app
    chat = chat_services.chat_create(workspace=workspace, title="bucket")
    auth = {"Authorization": f"Token {token}"}
    data = pdf_bytes("Quarterly figures", pages=2)

    uploaded = httpx.post(
        f"{base}/api/mothership/chats/{chat.id}/attachments", files={"file": ("q3.pdf", data)}, headers=auth, timeout=30
    )
    assert uploaded.status_code == 201, uploaded.text
    file = uploaded.json()
    assert server.keys(prefix) == {f"{prefix}/{chat.id}/{file['id']}/file"}  # in the bucket, nowhere else

    first_line = f"q3.pdf ({len(data)} bytes, application/pdf)"
    with websockets.sync.client.connect(base.replace("http", "ws", 1) + f"/ws/?token={token}", open_timeout=5) as socket:
        socket.send(json.dumps({"type": "subscribe", "conversationId": str(chat.id)}))
        assert json.loads(socket.recv(timeout=5))["type"] == "subscribed"
        sent = httpx.post(
            f"{base}/api/mothership/chats/{chat.id}/messages",
            json={"content": "what is in it?", "attachments": [file["id"]]},
            headers=auth,
            timeout=30,
        )
        assert sent.status_code == 201, sent.text
        streamed = ""
        while True:
            event = json.loads(socket.recv(timeout=20))
            if event["type"] == "stream.delta":
                streamed += event["text"]
            if event["type"].startswith("stream.") and event["type"] not in ("stream.started", "stream.delta", "stream.usage"):
                break
    assert event["type"] == "stream.completed", event
    assert streamed.startswith(first_line + "\n"), streamed[:200]

    def final_message():
        body = httpx.get(f"{base}/api/mothership/chats/{chat.id}", headers=auth, timeout=10).json()
        replies = [m for m in body["messages"] if m["role"] == "assistant" and m["status"] == "complete"]
        return replies[0] if replies else None

    reply = wait_for(final_message, 10, "the reply saved")
    assert reply["content"].splitlines()[0] == first_line

    downloaded = httpx.get(f"{base}{file['url']}", headers=auth, timeout=30)
    assert downloaded.status_code == 200 and downloaded.content == data
    stored = server.client().get_object(Bucket=server.bucket, Key=f"{prefix}/{chat.id}/{file['id']}/file")["Body"].read()
    assert stored == data
