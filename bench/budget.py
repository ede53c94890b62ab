"""What the budget check adds to a send, and what charging frames adds to a worker's frame tick.

*Send*: the send service (``stream_start``: the user message, the stream, the marker, the lock)
timed in a chat of --messages messages, interleaving the check left out (as before budgets), a
workspace without a budget and one with both budgets set (never reached), --sends each, in
--rounds rounds; the check itself
(``turn_budget_check``: the budget row, the chat's last charge, one Redis round trip) is timed
alone too. Each send is sealed at once, as a worker seals it (its charge in the ledger), so the
next can start (not timed).

*Frame tick*: one frame clock tick for --streams live turns (each with new text), publishing
the frames (``publish_frames``, one pipeline) and charging them (``charge_frames``, one Lua
call for the turns whose charge is due), so the added share is measured in the same run: far
from the budget (a turn's output is due once it owes 1/1000 of what is left, or every 2 s) and
with a cent left (every frame is charged).

*Turn*: what a worker does per turn for the budget and the ledger, timed in the same run: the
claim's reservation (``TurnBudget.of`` and ``reserve_prompt``: the prompt's cost taken from the
budget) and the seal (``stream_finalize``) with its charge written against the same seal with
the charge left out, interleaved, --sends turns a round (20 a chat of --messages messages).

Usage: .venv/bin/python bench/budget.py [--messages 50] [--sends 200] [--rounds 5] [--streams 100]
Uses DATABASE_URL / REDIS_URL when set (embedded defaults otherwise).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

if not os.environ.get("DATABASE_URL"):
    os.environ.setdefault("MOTHERSHIP_SQLITE_PATH", str(Path(tempfile.mkdtemp(prefix="mothership-bench-")) / "db.sqlite3"))

from _common import percentile, setup_django  # noqa: E402

setup_django()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from chats import services  # noqa: E402
from chats.models import Chat, Message  # noqa: E402
from spend.services import budget_set  # noqa: E402
from streams import frames  # noqa: E402
from streams.models import Stream  # noqa: E402
from streams.providers import Usage  # noqa: E402
from streams.services import finalize as finalize_module  # noqa: E402
from streams.services import start as start_module  # noqa: E402
from streams.services import stream_finalize  # noqa: E402
from streams.services.history import conversation_history  # noqa: E402
from streams.services.spending import TurnBudget, turn_budget_check  # noqa: E402
from streams.services.turn import Turn  # noqa: E402
from tests.factories import spent  # noqa: E402


def _ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.3f}"


def _seal(chat: Chat, stream_id) -> None:
    """The turn sealed as a worker seals it: its reply, its charge in the ledger, its lock freed."""
    stream_finalize(
        stream=Stream.objects.get(pk=stream_id),
        status="completed",
        reason="",
        text="an answer " * 20,
        last_seq=0,
        usage=Usage(input_tokens=4000, output_tokens=50),
    )


def _sends(chat: Chat, user, n: int, *, checked: bool = True) -> list[float]:
    start_module.turn_budget_check = turn_budget_check if checked else (lambda **kw: None)
    times = []
    for i in range(n):
        started = time.perf_counter()
        turn = start_module.stream_start(chat=chat, content=f"question {i} about the budget", user=user)
        times.append(time.perf_counter() - started)
        _seal(chat, turn.stream.id)
    return times


def _checks(chat: Chat, user, n: int) -> list[float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        turn_budget_check(chat=chat, user=user, content=f"question {i}", model="mothership-local-1")
        times.append(time.perf_counter() - started)
    return times


def send_bench(args) -> None:
    user = get_user_model().objects.create_user(username=f"budget-{os.getpid()}-{time.time_ns()}")
    chats = {}
    for label in ("no budget", "budget"):
        workspace = services.workspace_create(name=f"bench {label}", owner=user)
        chat = services.chat_create(workspace=workspace, title=label)
        Message.objects.bulk_create(
            Message(chat=chat, role="user" if i % 2 == 0 else "assistant", content="lorem ipsum dolor sit amet " * 15)
            for i in range(args.messages)
        )
        chats[label] = chat
    budget_set(workspace_id=chats["budget"].workspace_id, monthly_usd=Decimal("100000"), member_daily_usd=Decimal("10000"))
    start_module.stream_enqueue = lambda *, stream_id: None  # no worker: the send alone is timed
    _sends(chats["budget"], user, 20)  # warm-up: connections, scripts, caches
    _sends(chats["no budget"], user, 20)
    print(f"# send: {args.messages}+ messages a chat, {args.sends} sends each way a round, database {connection.vendor}")
    print(
        "| round | send, check left out p50 / p95 (ms) | send, no budget p50 / p95 | send, budget p50 / p95 "
        "| added by the check with a budget, p50 (ms) | the check alone p50 / p95 / max (ms) |"
    )
    print("|---|---|---|---|---|---|")
    added = []
    for round_no in range(1, args.rounds + 1):
        unchecked, without, with_budget = [], [], []
        for _ in range(args.sends // 20):  # interleaved in slices, so drift hits each alike
            unchecked += _sends(chats["no budget"], user, 20, checked=False)
            without += _sends(chats["no budget"], user, 20)
            with_budget += _sends(chats["budget"], user, 20)
        checks = _checks(chats["budget"], user, args.sends)
        delta = statistics.median(with_budget) - statistics.median(unchecked)
        added.append(delta)
        print(
            f"| {round_no} | {_ms(unchecked, 50)} / {_ms(unchecked, 95)} | {_ms(without, 50)} / {_ms(without, 95)} "
            f"| {_ms(with_budget, 50)} / {_ms(with_budget, 95)} | {delta * 1000:.3f} "
            f"| {_ms(checks, 50)} / {_ms(checks, 95)} / {max(checks) * 1000:.3f} |"
        )
    print(f"worst round: the check, with a budget, adds {max(added) * 1000:.3f} ms to a send's median")


class _Turn:
    """A live turn as the frame clock sees it (its ``Journal``), with text waiting."""

    def __init__(self, chat: Chat, stream: Stream, budget: TurnBudget):
        self.run = Turn(stream, budget).journal
        self.run.meter.delta_is_token = True
        self.run.stream.first_delta_at = self.run.stream.created_at

    def feed(self) -> None:
        self.run.pending += [" lorem", " ipsum", " dolor"]


def tick_bench(args, *, near_limit: bool) -> None:
    user = get_user_model().objects.create_user(username=f"ticks-{os.getpid()}-{time.time_ns()}")
    workspace = services.workspace_create(name="bench ticks", owner=user)
    budget_set(workspace_id=workspace.pk, monthly_usd=Decimal("1" if near_limit else "100000"), member_daily_usd=None)
    if near_limit:  # a cent left: every frame is charged (past the limit too, as a stopping turn's are)
        spent(workspace, "0.99")
    turns = []
    for i in range(args.streams):
        chat = services.chat_create(workspace=workspace, title=f"tick {i}")
        turn = start_module.stream_start(chat=chat, content="go", user=user)
        stream = Stream.objects.select_related("chat__workspace__budget").get(pk=turn.stream.id)
        turns.append(_Turn(chat, stream, TurnBudget.of(stream)))
    runs = [t.run for t in turns]
    TurnBudget.of(turns[0].run.stream).reserve_prompt(stream=turns[0].run.stream, history=[{"content": "go"}])  # seeds
    publish, charge = [], []
    for i in range(args.ticks + 20):
        for t in turns:
            t.feed()
        started = time.perf_counter()
        frames.publish_frames(runs)
        published = time.perf_counter()
        frames.charge_frames(runs)
        if i >= 20:
            publish.append(published - started)
            charge.append(time.perf_counter() - published)
    share = statistics.median(charge) / statistics.median(publish)
    print(
        f"# frame tick, {args.streams} live turns, {args.ticks} ticks, {'a cent left' if near_limit else 'far from the budget'}: "
        f"publish p50 {_ms(publish, 50)} ms, p99 "
        f"{_ms(publish, 99)} ms; charge p50 {_ms(charge, 50)} ms, p99 {_ms(charge, 99)} ms; "
        f"charge / publish {share:.2f} (per frame {statistics.median(charge) / args.streams * 1e6:.1f} µs)"
    )
    for t in turns:
        _seal(t.run.stream.chat, t.run.stream.id)


def turn_bench(args) -> None:
    real_charge = finalize_module.turn_charge_record
    user = get_user_model().objects.create_user(username=f"turns-{os.getpid()}-{time.time_ns()}")
    workspace = services.workspace_create(name="bench turns", owner=user)
    budget_set(workspace_id=workspace.pk, monthly_usd=Decimal("100000"), member_daily_usd=Decimal("10000"))
    start_module.stream_enqueue = lambda *, stream_id: None
    print(
        "| round | claim's reservation p50 / p95 (ms) | seal with its charge p50 / p95 | seal, charge left out "
        "p50 / p95 | the charge's share of the seal, p50 (ms) |"
    )
    print("|---|---|---|---|---|")
    for round_no in range(0, args.rounds + 1):  # round 0 warms up
        reserve, charged, bare = [], [], []
        chats = []
        for c in range(args.sends // 20):  # a conversation of --messages messages for each 20 turns
            chats.append(services.chat_create(workspace=workspace, title=f"turns {round_no}.{c}"))
            Message.objects.bulk_create(
                Message(chat=chats[-1], role="user" if i % 2 == 0 else "assistant", content="lorem ipsum dolor sit amet " * 15)
                for i in range(args.messages)
            )
        for i in range(args.sends):
            chat = chats[i // 20]
            turn = start_module.stream_start(chat=chat, content=f"question {i}", user=user)
            stream = Stream.objects.select_related("user_message", "chat__workspace__budget").get(pk=turn.stream.id)
            history = conversation_history(stream=stream)
            started = time.perf_counter()
            TurnBudget.of(stream).reserve_prompt(stream=stream, history=history)
            reserve.append(time.perf_counter() - started)
            with_charge = i % 2 == 0
            finalize_module.turn_charge_record = real_charge if with_charge else (lambda **kw: None)
            started = time.perf_counter()
            stream_finalize(
                stream=stream,
                status="completed",
                reason="",
                text="an answer " * 20,
                last_seq=0,
                usage=Usage(input_tokens=4000, output_tokens=50),
            )
            (charged if with_charge else bare).append(time.perf_counter() - started)
        finalize_module.turn_charge_record = real_charge
        if round_no:
            print(
                f"| {round_no} | {_ms(reserve, 50)} / {_ms(reserve, 95)} | {_ms(charged, 50)} / {_ms(charged, 95)} "
                f"| {_ms(bare, 50)} / {_ms(bare, 95)} | {(statistics.median(charged) - statistics.median(bare)) * 1000:.3f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--only", choices=["send", "tick", "turn"], help="one part alone")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    if args.only == "turn":
        turn_bench(args)
        return
    if args.only != "tick":
        send_bench(args)
    if args.only != "send":
        for _ in range(3):
            tick_bench(args, near_limit=False)
            tick_bench(args, near_limit=True)
    if args.only is None:
        turn_bench(args)


if __name__ == "__main__":
    main()
