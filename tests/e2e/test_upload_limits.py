"""A body past its path's limit is refused as it arrives, on the real uvicorn server
(``mothership.infra.uploads.RequestBodyLimit``): 413 when ``Content-Length`` says too much (before a
byte of the body is read), 413 for a chunked body (no ``Content-Length``) once it passes the limit,
long before the client is done; nothing of either is stored. A normal upload goes through it."""

from __future__ import annotations

import json
import socket
import time
import uuid

import httpx
import pytest

from chats import services as chat_services
from chats.models import Attachment
from mothership.infra.uploads import ENVELOPE, LINGER_SECONDS
from tests.support import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

LIMIT = 256 * 1024  # MOTHERSHIP_ATTACHMENT_MAX_BYTES of this server
BOUNDARY = "mothership-upload-test"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    """A server with a small file limit and an attachments folder of its own (to see nothing lands in it)."""
    tmp = tmp_path_factory.mktemp("upload-limits")
    folder = tmp / "attachments"
    folder.mkdir()
    proc, base = processes.start_server(tmp, MOTHERSHIP_ATTACHMENT_MAX_BYTES=LIMIT, MOTHERSHIP_ATTACHMENT_DIR=folder)
    yield proc, base, folder
    proc.stop()


def _multipart_head(name: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode()


def _request_head(base: str, path: str, token: str, *, length: int | None) -> bytes:
    port = httpx.URL(base).port
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n"
    ).encode()


def _answer(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the response read from ``sock`` (the server closes after it)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        got = sock.recv(65536)
        assert got, f"the connection closed before an answer: {raw!r}"
        raw += got
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), json.loads(body[:length])


def _answered(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)


def test_a_body_that_declares_more_than_the_limit_is_413_before_any_of_it_is_sent(server, workspace, token):
    _proc, base, folder = server
    chat = chat_services.chat_create(workspace=workspace, title="declared")
    path = f"/api/mothership/chats/{chat.id}/attachments"
    with socket.create_connection(("127.0.0.1", httpx.URL(base).port), timeout=10) as sock:
        sock.sendall(_request_head(base, path, token, length=LIMIT + ENVELOPE + 1))  # the headers alone
        status, body = _answer(sock)
    assert status == 413 and f"larger than the {LIMIT} bytes this address takes" in body["detail"]
    assert not Attachment.objects.filter(chat=chat).exists() and not any(folder.iterdir())


def test_a_chunked_body_past_the_limit_is_413_as_soon_as_it_passes_and_nothing_is_stored(server, workspace, token):
    _proc, base, folder = server
    chat = chat_services.chat_create(workspace=workspace, title="chunked")
    path = f"/api/mothership/chats/{chat.id}/attachments"
    chunk = b"x" * 16384
    would_send = 20 * LIMIT  # what the client means to send: far more than the limit
    sent = 0
    with socket.create_connection(("127.0.0.1", httpx.URL(base).port), timeout=10) as sock:
        sock.sendall(_request_head(base, path, token, length=None))
        head = _multipart_head("big.txt")
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        while sent < would_send and not _answered(sock):
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed; its answer is still to be read
            sent += len(chunk)
            time.sleep(0.001)
        status, body = _answer(sock)
    assert status == 413 and f"larger than the {LIMIT} bytes" in body["detail"]
    assert LIMIT < sent < 4 * LIMIT  # refused as it passed the limit, not after the client was done
    assert not Attachment.objects.filter(chat=chat).exists() and not any(folder.iterdir())


def test_a_chunked_upload_within_the_limit_and_a_normal_one_are_stored(server, workspace, token):
    _proc, base, folder = server
    chat = chat_services.chat_create(workspace=workspace, title="fits")
    path = f"/api/mothership/chats/{chat.id}/attachments"
    data = (b"a line of text that fits\n" * (LIMIT // 25 + 1))[:LIMIT]
    normal = httpx.post(base + path, files={"file": ("fits.txt", data)}, headers={"Authorization": f"Token {token}"}, timeout=30)
    assert normal.status_code == 201, normal.text
    assert normal.json()["size"] == LIMIT

    body = _multipart_head("chunked.txt") + data[: LIMIT // 2] + f"\r\n--{BOUNDARY}--\r\n".encode()
    with socket.create_connection(("127.0.0.1", httpx.URL(base).port), timeout=10) as sock:
        sock.sendall(_request_head(base, path, token, length=None))
        for start in range(0, len(body), 10000):
            piece = body[start : start + 10000]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        status, answer = _answer(sock)
    assert status == 201, answer
    assert answer["size"] == LIMIT // 2
    rows = Attachment.objects.filter(chat=chat)
    assert {(a.name, a.size) for a in rows} == {("fits.txt", LIMIT), ("chunked.txt", LIMIT // 2)}
    assert sorted(p.name for p in (folder / str(chat.id)).iterdir()) == sorted(str(a.pk) for a in rows)


def test_a_body_past_the_limit_on_another_address_gets_the_default_limit(server, token, settings):
    _proc, base, _folder = server
    answer = httpx.post(
        f"{base}/api/mothership/chats/{uuid.uuid4()}/messages",
        content=b"{" + b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + ENVELOPE) + b"}",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 413


def test_a_client_that_sends_the_whole_refused_body_before_reading_still_reads_the_413(server, workspace, token):
    """Most clients (httpx, requests, a browser's form post) write the whole body before they read a
    response: the server reads and drops the rest of a refused body before it closes, so its 413 is
    not lost to a connection reset."""
    _proc, base, folder = server
    chat = chat_services.chat_create(workspace=workspace, title="whole body")
    path = f"/api/mothership/chats/{chat.id}/attachments"
    size = 40 * (LIMIT + ENVELOPE)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", httpx.URL(base).port), timeout=10) as sock:
            sock.sendall(_request_head(base, path, token, length=size) + b"x" * size)
            status, body = _answer(sock)
        assert status == 413 and f"larger than the {LIMIT} bytes this address takes" in body["detail"]
        answer = httpx.post(
            base + path, content=b"y" * size, headers={"Authorization": f"Token {token}", "Content-Type": "text/plain"}
        )
        assert answer.status_code == 413 and "larger than" in answer.json()["detail"]
    assert not Attachment.objects.filter(chat=chat).exists() and not (folder / str(chat.id)).exists()


def test_a_refused_client_that_stops_sending_is_closed_after_the_linger(server, workspace, token):
    _proc, base, _folder = server
    chat = chat_services.chat_create(workspace=workspace, title="silent")
    path = f"/api/mothership/chats/{chat.id}/attachments"
    with socket.create_connection(("127.0.0.1", httpx.URL(base).port), timeout=LINGER_SECONDS + 5) as sock:
        sock.sendall(_request_head(base, path, token, length=10 * (LIMIT + ENVELOPE)) + b"x" * 1000)
        status, _body = _answer(sock)
        answered = time.monotonic()
        try:
            rest = sock.recv(65536)
        except ConnectionResetError:
            rest = b""
        closed_after = time.monotonic() - answered
    assert status == 413 and rest == b""  # nothing after the answer but the close
    assert LINGER_SECONDS - 1 < closed_after < LINGER_SECONDS + 3, closed_after
