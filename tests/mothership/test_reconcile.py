"""Read-time reconciliation of the chat marker against the liveness lock (seeds/sim-…)."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chats import services as chat_services
from chats.models import Chat
from mothership import selectors
from mothership.infra.redis import get_redis
from streams import locks
from streams.models import Stream
from streams.services import stream_start

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_worker(turns_not_enqueued):
    return turns_not_enqueued


def test_a_marker_whose_lock_is_gone_reads_as_not_running_and_is_repaired_without_reordering(api, chat, workspace):
    other = chat_services.chat_create(workspace=workspace, title="newer")
    stream_start(chat=chat, content="hi")
    chat.refresh_from_db()
    before = chat.updated_at
    get_redis().delete(locks.lock_key(chat.id))  # the worker died and the TTL ran out

    listed = {c["id"]: c for c in api.get(f"/api/mothership/chats?workspace={workspace.id}").json()}
    assert listed[str(chat.id)]["active_stream_id"] is None
    # Not running; its worker is gone (the sweeper will seal it as interrupted).
    assert listed[str(chat.id)]["state"] == "interrupted" and listed[str(chat.id)]["liveness"] == "verified"
    chat.refresh_from_db()
    assert chat.active_stream_id is None  # repaired by compare-and-set
    assert chat.updated_at == before  # maintenance never bumps ordering
    assert [c["id"] for c in api.get("/api/mothership/chats").json()] == [str(chat.id), str(other.id)]


def test_the_redis_owner_wins_over_a_stale_marker(api, chat):
    turn = stream_start(chat=chat, content="hi")
    newer = uuid.uuid4()
    get_redis().set(locks.lock_key(chat.id), str(newer))
    detail = api.get(f"/api/mothership/chats/{chat.id}").json()
    assert detail["active_stream_id"] == str(newer) and detail["state"] == "streaming"
    chat.refresh_from_db()
    assert chat.active_stream_id == newer
    get_redis().delete(locks.lock_key(chat.id))
    assert Stream.objects.get(pk=turn.stream.pk).status == "queued"  # a read repairs the marker, never seals a turn


def test_repair_is_a_compare_and_set_so_a_newer_turn_is_never_cleared(chat):
    old, new = uuid.uuid4(), uuid.uuid4()
    Chat.objects.filter(pk=chat.pk).update(active_stream_id=new)  # a newer turn started after the read
    assert chat_services.chat_markers_repair(repairs={chat.pk: (old, None)}) == 0
    chat.refresh_from_db()
    assert chat.active_stream_id == new


def test_one_mget_and_constant_queries_whatever_the_number_of_chats(user, workspace, redis_round_trips):
    def mgets() -> list[int]:
        """The keys of each Redis request since the last call: only MGETs, of 2 keys per marked
        chat (its lock, its stream's last event time)."""
        sent = [bytes(b"".join(c) if isinstance(c, list) else c) for c in redis_round_trips]
        redis_round_trips.clear()
        assert all(b"MGET" in c for c in sent), sent
        return [c.count(b"mothership:") for c in sent]

    measured = {}
    for n in (4, 40):
        Chat.objects.all().delete()
        chats = Chat.objects.bulk_create(
            [Chat(workspace=workspace, title=f"c{i}", active_stream_id=uuid.uuid4()) for i in range(n)]
        )
        for c in chats[: n // 2]:
            get_redis().set(locks.lock_key(c.id), str(c.active_stream_id), px=60_000)
        redis_round_trips.clear()
        with CaptureQueriesContext(connection) as queries:
            views, _next = selectors.chat_list(user=user, workspace=workspace)
        assert sum(v.active_stream_id is not None for v in views) == n // 2
        assert mgets() == [4 * n]  # one MGET for all marked chats: lock, last event, waiting call, running tool
        measured[n] = len(queries)
        selectors.chat_list(user=user, workspace=workspace)
        assert mgets() == [4 * (n // 2)]  # repaired rows no longer ask Redis
    assert measured[4] == measured[40]
    Chat.objects.filter(active_stream_id__isnull=False).update(active_stream_id=None)
    redis_round_trips.clear()
    selectors.chat_list(user=user, workspace=workspace)
    assert mgets() == []  # no marker set: no Redis round trip at all


def test_a_read_repairs_a_bounded_number_of_rows_and_the_sweeper_clears_the_rest(user, workspace, monkeypatch):
    monkeypatch.setattr(selectors, "READ_REPAIR_LIMIT", 5)
    Chat.objects.bulk_create([Chat(workspace=workspace, title=f"c{i}", active_stream_id=uuid.uuid4()) for i in range(12)])

    views, _next = selectors.chat_list(user=user, workspace=workspace)

    assert all(v.active_stream_id is None and v.liveness == "verified" for v in views)  # the answer is whole
    assert Chat.objects.filter(active_stream_id__isnull=False).count() == 7  # only 5 rows written by the read
    from streams.services import streams_sweep

    assert streams_sweep()["markers_cleared"] == 7
    assert not Chat.objects.filter(active_stream_id__isnull=False).exists()


def test_redis_down_list_and_detail_answer_200_with_liveness_unknown_and_markers_kept(api, chat, private_redis, browser_client):
    turn = stream_start(chat=chat, content="hi")
    private_redis.stop()
    listed = api.get("/api/mothership/chats")
    assert listed.status_code == 200
    row = listed.json()[0]
    assert (row["liveness"], row["active_stream_id"], row["state"]) == ("unknown", str(turn.stream.id), "streaming")
    detail = api.get(f"/api/mothership/chats/{chat.id}")
    assert detail.status_code == 200 and detail.json()["liveness"] == "unknown"
    assert detail.json()["stream"]["text"] is None
    chat.refresh_from_db()
    assert chat.active_stream_id == turn.stream.id
    assert browser_client.get("/").status_code == 200
    # A write that needs the lock says so clearly instead of failing with a 500.
    refused = api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "again"}, format="json")
    assert refused.status_code == 503 and "unavailable" in refused.json()["detail"]
