"""Budgets over real processes: a real web server and worker, real WebSockets, real Redis; the
race for a budget's last dollars on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from decimal import Decimal

import httpx
import pytest
import websockets
from django.db.models import Sum
from django.utils import timezone

from spend import counters
from spend.models import Charge, WorkspaceMonthSpend
from spend.services import budget_set
from streams import eventlog
from streams.models import Stream
from streams.providers.base import estimate_tokens
from streams.services import stream_start
from tests.factories import ChatFactory, spent
from tests.support import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TERMINAL = {"stream.completed", "stream.cancelled", "stream.interrupted", "stream.failed"}
OUTPUT_NANOUSD_PER_TOKEN = 15 * 1000  # the default price: 15 $ per million output tokens


@pytest.fixture(scope="module")
def spending(django_db_setup, django_db_blocker, tmp_path_factory):
    """A web server and a worker (20 turns at once, long replies at 100 tokens/s) on a queue of their own."""
    tmp = tmp_path_factory.mktemp("spend")
    queue = f"spend-{uuid.uuid4().hex[:8]}"
    settings = {
        "MOTHERSHIP_CELERY_QUEUE": queue,
        "MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": 100,
        "MOTHERSHIP_LOCAL_REPLY_TOKENS": 2000,
    }
    worker = processes.start_worker(tmp, name="spend", concurrency=20, **settings)
    web, base = processes.start_server(tmp, name="spend-web", **settings)
    yield {"base": base, "queue": queue}
    web.stop()
    worker.stop()


def _frame_nanousd(event: dict) -> int:
    return estimate_tokens(event.get("text", "")) * OUTPUT_NANOUSD_PER_TOKEN


async def _receive(socket, timeout: float) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


def test_a_turn_stops_at_the_budget_mid_stream_and_every_tab_sees_why(spending, token, chat, workspace):
    base = spending["base"]
    headers = {"Authorization": f"Token {token}"}

    async def scenario():
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:
            # Given an owner's monthly budget of a fifth of a cent: a 20-second reply would cost 3 cents
            put = await http.put(f"/api/mothership/workspaces/{workspace.pk}/budget", json={"monthly_usd": 0.002})
            assert put.status_code == 200, put.text
            async with websockets.connect(base.replace("http", "ws") + f"/ws/?token={token}") as tab:
                await tab.send(json.dumps({"type": "subscribe", "conversationId": str(chat.id)}))
                assert (await _receive(tab, 5))["type"] == "subscribed"

                # When a member sends a message
                sent = await http.post(f"/api/mothership/chats/{chat.id}/messages", json={"content": "tell me a story"})
                assert sent.status_code == 201, sent.text
                events, deadline = [], time.monotonic() + 30
                while not events or events[-1]["type"] not in TERMINAL:
                    event = await _receive(tab, max(0.1, deadline - time.monotonic()))
                    if event["type"].startswith("stream."):
                        events.append(event)
            budget = (await http.get(f"/api/mothership/workspaces/{workspace.pk}/budget")).json()
            again = await http.post(f"/api/mothership/chats/{chat.id}/messages", json={"content": "more"})
            detail = (await http.get(f"/api/mothership/chats/{chat.id}")).json()
        return sent.json(), events, budget, again, detail

    sent, events, budget, again, detail = asyncio.run(scenario())

    # Then the tab saw the turn stop at the budget, as a Stop: cancelled, reason budget, gapless
    terminal = events[-1]
    assert (terminal["type"], terminal["reason"]) == ("stream.cancelled", "budget")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    deltas = [e for e in events if e["type"] == "stream.delta"]
    text = "".join(e["text"] for e in deltas)
    assert text and len(text) < 2000 * 4  # stopped well before the model's end
    # And its text is kept, and the chat says why it stopped
    assert detail["messages"][-1]["content"] == text and detail["messages"][-1]["status"] == "cancelled"
    assert detail["messages"][-1]["stop_reason"] == "budget"
    # And it spent no more than the budget and the frame that crossed it (and what the stopped
    # model still sent)
    charge = Charge.objects.get(pk=sent["stream_id"])
    largest_frame = max(_frame_nanousd(e) for e in deltas)
    assert charge.cost_nanousd <= 2_000_000 + 2 * largest_frame
    assert budget["spent_month_usd"] == pytest.approx(charge.cost_nanousd / 1e9)
    # And the next send is refused before it is queued
    assert again.status_code == 402 and again.json()["code"] == "budget_exceeded"


@pytest.mark.postgres
def test_twenty_turns_racing_for_the_last_cent_overshoot_by_at_most_a_frame_each(spending, workspace):
    # Given a workspace one cent short of its 5-dollar month, and 20 conversations
    budget_set(workspace_id=workspace.pk, monthly_usd=Decimal("5"), member_daily_usd=None)
    spent(workspace, "4.99")
    chats = [ChatFactory(workspace=workspace) for _ in range(20)]

    # When a turn starts in each at once (each 2,000 tokens long: 3 cents)
    with processes.routed_to(spending["queue"]):
        turns = [stream_start(chat=chat, content=f"turn {i}") for i, chat in enumerate(chats)]
    ids = [t.stream.id for t in turns]
    deadline = time.monotonic() + 60
    while Stream.objects.filter(pk__in=ids, status__in=Stream.LIVE_STATUSES).exists():
        assert time.monotonic() < deadline, "turns still running past the budget"
        time.sleep(0.1)

    # Then every one stopped at the budget
    streams = list(Stream.objects.filter(pk__in=ids))
    assert {(s.status, s.reason) for s in streams} == {("cancelled", "budget")}
    # And together they passed it by no more than about one frame each (the frame that crossed,
    # and what a stopped model still sent)
    allowance = 0
    for stream in streams:
        frames = [e for e in eventlog.read(stream.pk) if e["type"] == "stream.delta"]
        allowance += 2 * max((_frame_nanousd(e) for e in frames), default=0)
    month = timezone.localdate().replace(day=1)
    ledger = Charge.objects.filter(workspace=workspace).aggregate(total=Sum("cost_nanousd"))["total"]
    assert ledger - 5 * 10**9 <= allowance, (ledger - 5 * 10**9, allowance)
    # And the running total is the ledger's sum, in the database and in Redis
    assert WorkspaceMonthSpend.objects.get(workspace=workspace, month=month).cost_nanousd == ledger
    scope = counters.Scope.of(workspace_id=workspace.pk, user_id=None, at=timezone.now())
    assert counters.spent(scope, seed=lambda s: (-1, None))[0] == ledger
    assert Charge.objects.filter(pk__in=ids).count() == 20
    assert all(c.at <= timezone.now() + datetime.timedelta(seconds=1) for c in Charge.objects.filter(pk__in=ids))
