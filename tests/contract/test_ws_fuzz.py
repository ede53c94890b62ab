"""Generated frames against the real server's socket: every one is answered with a frame of the
contract or an error frame (never a close, never a dead consumer), and other sockets carry on."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from tests.support import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TYPES = ["subscribe", "unsubscribe", "stream.resume", "ping", "invoke", "launch", ""]
ACTIONS = ["set-enabled", "set-interval", "warm-now", "toggle", "explode"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def frames(chat_id: str, workspace_id: str):
    ids = st.sampled_from([chat_id, workspace_id, str(uuid.uuid4()), "not-a-uuid"]) | JSON_VALUES
    message = st.fixed_dictionaries(
        {"type": st.sampled_from(TYPES) | JSON_VALUES},
        optional={
            "conversationId": ids,
            "workspaceId": ids,
            "streamId": ids,
            "surfaceId": st.sampled_from(["cache-warming", "nope"]) | JSON_VALUES,
            "afterSeq": st.integers(-5, 10**20) | JSON_VALUES,
            "action": st.sampled_from(ACTIONS) | JSON_VALUES,
            "payload": JSON_VALUES,
        },
    )
    return (
        message.map(json.dumps)
        | JSON_VALUES.map(json.dumps)
        | st.text(max_size=200)
        | st.binary(max_size=200)
        | st.integers(1, 40_000).map(lambda depth: "[" * depth + "]" * depth)
    )


def _until_pong(socket) -> list[dict]:
    """Everything the server sends up to the pong that answers our ping."""
    socket.send(json.dumps({"type": "ping"}))
    seen = []
    while True:
        message = json.loads(socket.recv(timeout=10))
        if message == {"type": "pong"}:
            return seen
        seen.append(message)


@pytest.fixture
def unthrottled_server(tmp_path):
    """A real server whose sockets may send as fast as the test can (the rate limit has its own test)."""
    proc, base = processes.start_server(
        tmp_path, name="fuzz", MOTHERSHIP_WS_MESSAGES_PER_SECOND=100_000, MOTHERSHIP_WS_MESSAGE_BURST=100_000
    )
    yield base
    proc.stop()


def test_generated_frames_get_contract_frames_or_errors_and_the_socket_stays_open(unthrottled_server, token, chat):
    ws_url = unthrottled_server.replace("http", "ws") + f"/ws/?token={token}"
    with connect(ws_url, max_size=None) as bystander, connect(ws_url, max_size=None) as socket:

        @given(frame=frames(str(chat.id), str(chat.workspace_id)))
        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def fuzz(frame):
            socket.send(frame)
            for message in _until_pong(socket):
                assert isinstance(message, dict) and isinstance(message.get("type"), str), message
                if message["type"] == "error":
                    assert isinstance(message["code"], str) and isinstance(message["message"], str) and message["message"]

        fuzz()
        _until_pong(socket)  # still open: a closed socket raises, a dead consumer never answers
        assert _until_pong(bystander) == []  # the other socket saw none of it
