"""Tool calls over real processes: a worker that calls the demo MCP server (its child, over
stdio), a socket that watches, Stop mid-call and ``kill -9`` of the worker mid-call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
from channels.db import database_sync_to_async

from chats.models import Message
from streams.models import Stream
from tests.support import processes
from tests.support.sockets import receive_until, subscribed_socket
from tests.support.tools import demo_entry, demo_records
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TTL = 3


@pytest.fixture
def tool_chat(chat):
    chat.tools = ["demo.*"]
    chat.save(update_fields=["tools"])
    return chat


def _tool_worker(tmp_path, name: str, **env):
    log = tmp_path / f"{name}-tools.jsonl"
    worker = processes.start_worker_on_own_queue(
        tmp_path,
        name=name,
        MCP_SERVERS=json.dumps([demo_entry(log)]),
        MOTHERSHIP_STREAM_LOCK_TTL=TTL,
        MOTHERSHIP_STREAM_HEARTBEAT=1,
        **env,
    )
    worker.tools_log = log
    return worker


async def _send(api, chat, queue: str, content: str) -> dict:
    def post():
        with processes.routed_to(queue):
            return api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": content}, format="json")

    answer = await database_sync_to_async(post)()
    assert answer.status_code == 201, answer.content
    return answer.json()


async def test_stop_mid_call_cancels_it_on_the_server_and_every_tab_sees_the_call_end(tmp_path, api, user, tool_chat):
    worker = _tool_worker(tmp_path, "tools")
    try:
        tab = await subscribed_socket(user, tool_chat)
        sent = await _send(api, tool_chat, worker.queue, '/tool demo.sleep {"seconds": 60, "label": "e2e-stop"}')
        events: list[dict] = []
        call = await receive_until(events, tab, lambda e: e["type"] == "stream.tool_call")
        assert (call["tool"], call["arguments"]) == ("demo.sleep", {"seconds": 60, "label": "e2e-stop"})
        await database_sync_to_async(wait_for)(
            lambda: any(r["label"] == "e2e-stop" for r in demo_records(worker.tools_log)), 10, "the server to start"
        )

        stopped = await database_sync_to_async(api.post)(
            f"/api/mothership/chats/{tool_chat.id}/cancel", {"stream_id": sent["stream_id"]}, format="json"
        )

        assert stopped.json()["cancelled"] is True and stopped.json()["settled"] is True
        result = await receive_until(events, tab, lambda e: e["type"] == "stream.tool_result")
        assert (result["callId"], result["status"]) == (call["callId"], "cancelled")
        await receive_until(events, tab, lambda e: e["type"] == "stream.cancelled")
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        # The server's own record: its handler was cancelled.
        await database_sync_to_async(wait_for)(
            lambda: any(r["label"] == "e2e-stop" and r["event"] == "cancelled" for r in demo_records(worker.tools_log)),
            5,
            "the server's record of the cancellation",
        )
        message = await database_sync_to_async(Message.objects.get)(pk=sent["message_id"])
        assert message.status == "cancelled" and [c["status"] for c in message.tool_calls] == ["cancelled"]

        # The worker goes on: the next turn calls a tool on the same connection.
        again = await _send(api, tool_chat, worker.queue, '/tool demo.sleep {"seconds": 0, "label": "after"}')
        done = await receive_until(events, tab, lambda e: e["type"] == "stream.completed" and e["streamId"] == again["stream_id"])
        assert done["partial"] is False
        await tab.disconnect()
    finally:
        worker.stop()


async def test_a_worker_killed_mid_call_leaves_an_honest_record_and_its_server_ends(live_worker, tmp_path, api, user, tool_chat):
    worker = _tool_worker(tmp_path, "doomed-tools")
    beat = None
    try:
        tab = await subscribed_socket(user, tool_chat)
        sent = await _send(api, tool_chat, worker.queue, '/tool demo.sleep {"seconds": 60, "label": "e2e-kill"}')
        events: list[dict] = []
        await receive_until(events, tab, lambda e: e["type"] == "stream.tool_call")
        started = await database_sync_to_async(wait_for)(
            lambda: [r for r in demo_records(worker.tools_log) if r["label"] == "e2e-kill"], 10, "the server to start"
        )
        os.kill(worker.pid, signal.SIGKILL)  # the worker alone: its stdio server learns it from its closed stdin
        killed_at = time.monotonic()

        while (await database_sync_to_async(api.get)(f"/api/mothership/chats/{tool_chat.id}")).json()["state"] == "streaming":
            assert time.monotonic() - killed_at <= TTL + 1, "tile still yellow after TTL + 1 s"
            await asyncio.sleep(0.1)
        await database_sync_to_async(wait_for)(
            lambda: not _alive(started[0]["pid"]), 10, "the tool server to end with its worker"
        )

        beat = processes.start_beat(tmp_path, MOTHERSHIP_SWEEP_INTERVAL=0.5)  # the session's worker runs the sweeps
        await receive_until(events, tab, lambda e: e["type"] == "stream.interrupted")
        stream = await database_sync_to_async(Stream.objects.get)(pk=sent["stream_id"])
        message = await database_sync_to_async(Message.objects.get)(pk=sent["message_id"])
        assert (stream.status, stream.reason, message.status) == ("interrupted", "worker_lost", "interrupted")
        assert [(c["tool"], c["status"]) for c in message.tool_calls] == [("demo.sleep", "interrupted")]
        await tab.disconnect()
    finally:
        if beat is not None:
            beat.stop()
        worker.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (its parent died) is not running
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
    return True


async def test_a_call_that_needs_approval_says_needs_you_on_every_dashboard_and_another_member_approves_it(
    tmp_path, api, user, workspace, tool_chat, make_user
):
    from channels.testing.websocket import WebsocketCommunicator
    from rest_framework.test import APIClient

    from mothership.consumers import MothershipConsumer
    from tests import factories

    log = tmp_path / "approve-tools.jsonl"
    worker = processes.start_worker_on_own_queue(
        tmp_path, name="approve", MCP_SERVERS=json.dumps([demo_entry(log, approve=True)])
    )
    try:
        tab = await subscribed_socket(user, tool_chat)
        dashboard = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
        dashboard.scope["user"] = user
        assert (await dashboard.connect())[0]
        await dashboard.send_json_to({"type": "subscribe", "workspaceId": str(workspace.id)})
        assert (await dashboard.receive_json_from(timeout=5))["type"] == "subscribed"

        sent = await _send(api, tool_chat, worker.queue, '/tool demo.roll {"sides": 6}')
        events: list[dict] = []
        asked = await receive_until(events, tab, lambda e: e["type"] == "stream.tool_approval")
        tiles: list[dict] = []
        waiting = await receive_until(tiles, dashboard, lambda t: t.get("type") == "tile" and t["state"] == "waiting")
        assert "needs you" in waiting["html"]
        assert not demo_records(log)  # nothing is called before a person says so

        # Another member of the workspace approves it, from their own client.
        colleague = await database_sync_to_async(lambda: factories.MembershipFactory(workspace=workspace).user)()
        other = APIClient()
        other.force_authenticate(colleague)
        url = f"/api/mothership/chats/{tool_chat.id}/tool-calls/{asked['callId']}/approval"
        answer = await database_sync_to_async(other.post)(url, {"approve": True}, format="json")
        assert answer.status_code == 200, answer.content

        result = await receive_until(events, tab, lambda e: e["type"] == "stream.tool_result")
        assert result["status"] == "ok" and 1 <= int(result["content"]) <= 6
        await receive_until(events, tab, lambda e: e["type"] == "stream.completed")
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        await receive_until(tiles, dashboard, lambda t: t.get("type") == "tile" and t["state"] not in ("waiting", "streaming"))
        message = await database_sync_to_async(Message.objects.get)(pk=sent["message_id"])
        assert message.content == result["content"]
        await tab.disconnect()
        await dashboard.disconnect()
    finally:
        worker.stop()
