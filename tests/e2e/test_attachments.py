"""Attachments end to end: uploaded to the real server, sent, named by the local model in the
reply the real worker streams to a real socket, shown to every tab, downloaded back byte for byte."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from chats.models import Membership
from tests import factories
from tests.e2e.test_stream_slice import _ws_receive, collect_until_terminal
from tests.support.files import image_bytes, pdf_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


async def test_files_uploaded_and_sent_reach_the_worker_the_socket_and_come_back_byte_for_byte(
    live_worker, live_server_url, token, chat
):
    ws_url = live_server_url.replace("http", "ws") + f"/ws/?token={token}"
    headers = {"Authorization": f"Token {token}"}
    files = {
        "notes.md": b"# Plan\n\n- ship\n",
        "report.pdf": pdf_bytes("Numbers"),
        "photo.jpg": image_bytes("JPEG", size=(800, 600)),
    }
    async with websockets.connect(ws_url) as tab, httpx.AsyncClient(base_url=live_server_url, headers=headers) as http:
        await tab.send(json.dumps({"type": "subscribe", "conversationId": str(chat.id)}))
        assert (await _ws_receive(tab, 5))["type"] == "subscribed"
        uploaded = []
        for name, data in files.items():
            answer = await http.post(
                f"/api/mothership/chats/{chat.id}/attachments", files={"file": (name, data, "application/octet-stream")}
            )
            assert answer.status_code == 201, answer.text
            uploaded.append(answer.json())
        sent = await http.post(
            f"/api/mothership/chats/{chat.id}/messages",
            json={"content": "/echo read them", "attachments": [u["id"] for u in uploaded]},
        )
        assert sent.status_code == 201, sent.text
        events = await collect_until_terminal(lambda t: _ws_receive(tab, t))
        started, last = events[0], events[-1]
        assert started["type"] == "stream.started" and last["type"] == "stream.completed"
        assert [a["id"] for a in started["userAttachments"]] == [u["id"] for u in uploaded]
        text = "".join(e.get("text", "") for e in events if e["type"] == "stream.delta")
        lines = [f"{u['name']} ({u['size']} bytes, {u['content_type']})" for u in uploaded]
        assert text == "\n".join(lines) + "\n\nread them"
        assert [u["content_type"] for u in uploaded] == ["text/markdown", "application/pdf", "image/jpeg"]
        detail = (await http.get(f"/api/mothership/chats/{chat.id}")).json()
        question = next(m for m in detail["messages"] if m["role"] == "user")
        assert [a["id"] for a in question["attachments"]] == [u["id"] for u in uploaded]
        for upload, (name, data) in zip(uploaded, files.items(), strict=True):
            got = await http.get(upload["url"])
            assert got.status_code == 200 and got.headers["x-content-type-options"] == "nosniff"
            if name != "photo.jpg":  # an image is re-encoded; the others come back as they went
                assert got.content == data and got.headers["content-disposition"].startswith("attachment;")
            else:
                assert got.content.startswith(b"\xff\xd8\xff") and got.headers["content-disposition"].startswith("inline;")


async def test_a_non_member_gets_404_for_a_file_on_the_real_server(live_server_url, token, chat, make_user):
    stranger = await database_sync_to_async(make_user)("eve")
    other_key = (await database_sync_to_async(Token.objects.create)(user=stranger)).key
    await database_sync_to_async(factories.MembershipFactory)(user=stranger, role=Membership.Role.OWNER)  # a workspace of her own
    async with httpx.AsyncClient(base_url=live_server_url) as http:
        answer = await http.post(
            f"/api/mothership/chats/{chat.id}/attachments",
            files={"file": ("a.txt", b"mine")},
            headers={"Authorization": f"Token {token}"},
        )
        url = answer.json()["url"]
        assert (await http.get(url, headers={"Authorization": f"Token {other_key}"})).status_code == 404
        assert (await http.get(url, headers={"Authorization": f"Token {token}"})).status_code == 200
