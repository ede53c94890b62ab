"""A socket whose client does not read, against the real server as ``make run`` starts it.

Its unread output is bounded (``MOTHERSHIP_WS_SEND_BUFFER_BYTES``): past it the server closes the
socket with 4008 and drops it if the client still does not read; every other socket is served
as before, and a client that reconnects resumes after its last seq with nothing lost.
"""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest
from websockets.sync.client import connect

from mothership.infra.wsprotocol import SLOW_CONSUMER
from streams import eventlog
from streams.models import Stream
from tests import factories
from tests.support import processes
from tests.support.rawws import RawSocket
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

BOUND = 64 * 1024
TERMINAL = {"stream.completed", "stream.cancelled", "stream.interrupted", "stream.failed"}


@pytest.fixture
def slow_app(tmp_path):
    env = {"MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": 6000, "MOTHERSHIP_LOCAL_REPLY_TOKENS": 12000}
    worker = processes.start_worker_on_own_queue(tmp_path, name="slow-sockets", **env)
    web, base = processes.start_server(
        tmp_path, name="web-slow", MOTHERSHIP_CELERY_QUEUE=worker.queue, MOTHERSHIP_WS_SEND_BUFFER_BYTES=BOUND, **env
    )
    yield web, base
    web.stop()
    worker.stop()


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _collect(socket, stream_ids: set[str], timeout: float = 30) -> dict[str, list[dict]]:
    events: dict[str, list[dict]] = {s: [] for s in stream_ids}
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    while done != stream_ids:
        event = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if event.get("streamId") in events:
            events[event["streamId"]].append(event)
            if event["type"] in TERMINAL:
                done.add(event["streamId"])
    return events


def test_a_socket_that_never_reads_is_closed_with_4008_and_others_are_served(slow_app, token, workspace):
    web, base = slow_app
    ws_url = base.replace("http", "ws") + f"/ws/?token={token}"
    http = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=10)
    chats = [factories.ChatFactory(workspace=workspace, title=f"slow {i}") for i in range(4)]

    # A finished long reply, whose log the never-reading client asks for again and again.
    first = http.post(f"/api/mothership/chats/{chats[0].id}/messages", json={"content": "long one"}).json()["stream_id"]
    wait_for(lambda: Stream.objects.get(pk=first).status == Stream.Status.COMPLETED, 30, "the first reply")

    stalled, never = RawSocket(ws_url), RawSocket(ws_url)  # one reads in the end, one never does
    for chat in chats:
        stalled.send_json({"type": "subscribe", "conversationId": str(chat.id)})
        never.send_json({"type": "subscribe", "conversationId": str(chat.id)})
    for _ in range(80):
        never.send_json(
            {"type": "stream.resume", "conversationId": str(chats[0].id), "streamId": first, "afterSeq": 0}
        )  # ~80 × its log (~7 MB): past the kernel's buffers (up to 4 MB) and the bound
        stalled.send_json({"type": "stream.resume", "conversationId": str(chats[0].id), "streamId": first, "afterSeq": 0})
    rss_before = _rss_kb(web.pid)

    with connect(ws_url, max_size=None) as bystander:
        for chat in chats:
            bystander.send(json.dumps({"type": "subscribe", "conversationId": str(chat.id)}))
        sent = {
            http.post(f"/api/mothership/chats/{c.id}/messages", json={"content": f"live {c.title}"}).json()["stream_id"]
            for c in chats
        }
        # The socket that reads gets every event of every reply, gapless, as if nobody were slow.
        for stream_id, events in _collect(bystander, sent).items():
            seqs = [e["seq"] for e in events if e["type"] != "subscribed"]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), stream_id
            assert events[-1]["type"] == "stream.completed"

    wait_for(lambda: web.output().count(f"closing it with {SLOW_CONSUMER}") == 2, 10, "the slow sockets' close")
    assert _server_side(base, never)  # closing: its buffered output and close frame wait for a while
    assert _rss_kb(web.pid) - rss_before < 20_000  # its output was never held past the bound

    # The client reads at last: what was buffered, then the close frame with 4008.
    received, code = stalled.read_all(timeout=10)
    stalled.close()
    assert code == SLOW_CONSUMER
    assert received and all(isinstance(m, dict) for m in received)

    # It reconnects and resumes each live reply after the last seq it got: nothing is lost.
    last = {}
    for event in received:
        if event.get("streamId") in sent:
            last[event["streamId"]] = event["seq"]
    with connect(ws_url, max_size=None) as again:
        for chat in chats:
            stream_id = Stream.objects.filter(chat=chat).latest("created_at").pk
            again.send(
                json.dumps(
                    {
                        "type": "stream.resume",
                        "conversationId": str(chat.id),
                        "streamId": str(stream_id),
                        "afterSeq": last.get(str(stream_id), 0),
                    }
                )
            )
        resumed = _collect(again, sent)
    for stream_id in sent:
        events = [e for e in received if e.get("streamId") == stream_id] + resumed[stream_id]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), stream_id
        text = "".join(e.get("text", "") for e in events if e["type"] == "stream.delta")
        assert text == "".join(e.get("text", "") for e in eventlog.read(stream_id) if e["type"] == "stream.delta")
        assert text == Stream.objects.get(pk=stream_id).assistant_message.content

    # The one that never reads is dropped (its close frame can never be read) within the close timeout.
    wait_for(lambda: not _server_side(base, never), 15, "the never-reading socket's drop")
    never.close()


def _server_side(base: str, client: RawSocket) -> str:
    """The server's end of ``client``'s connection, as ``ss`` lists it (empty once it is gone)."""
    port, client_port = base.rsplit(":", 1)[1], client.sock.getsockname()[1]
    listing = subprocess.run(
        ["ss", "-Htn", "state", "established", "sport", "=", f":{port}", "dport", "=", f":{client_port}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout.strip()
