"""Reconciliation cost on the chat list: Redis round trips, SQL queries, latency ratio.

Usage: .venv/bin/python bench/reconcile.py [--chats 1000] [--repeat 30]
Uses DATABASE_URL / REDIS_URL when set (embedded defaults otherwise); creates its own workspace
and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

from _common import setup_django

setup_django()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from chats import services  # noqa: E402
from chats.models import Chat  # noqa: E402
from mothership import selectors  # noqa: E402
from mothership.infra.redis import get_redis  # noqa: E402
from streams import locks  # noqa: E402


def redis_commands() -> int:
    return int(get_redis().info("stats")["total_commands_processed"])


def setup(n: int):
    user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}")
    workspace = services.workspace_create(name="bench", owner=user)
    chats = Chat.objects.bulk_create(
        [Chat(workspace=workspace, title=f"chat {i}", active_stream_id=uuid.uuid4()) for i in range(n)], batch_size=1000
    )
    pipe = get_redis().pipeline()
    for chat in chats[: n // 2]:  # half of them really streaming
        pipe.set(locks.lock_key(chat.id), str(chat.active_stream_id), px=600_000)
    pipe.execute()
    return user, workspace, chats


def remark(chats):
    # Put the dead half's markers back so every measured request reconciles (and repairs) them.
    # Each its own stream id, as in life (stream ids are unique).
    dead = chats[len(chats) // 2 :]
    for chat in dead:
        chat.active_stream_id = uuid.uuid4()
    Chat.objects.bulk_update(dead, ["active_stream_id"], batch_size=500)


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(user, workspace, chats, repeat: int) -> dict:
    remark(chats)
    before = redis_commands()
    with CaptureQueriesContext(connection) as queries:
        selectors.chat_list(user=user, workspace=workspace, limit=len(chats))
    round_trips = redis_commands() - before - 1  # minus the INFO call itself
    with_ = lambda: selectors.chat_list(user=user, workspace=workspace, limit=len(chats))  # noqa: E731
    without = lambda: selectors.chat_list(user=user, workspace=workspace, limit=len(chats), reconcile=False)  # noqa: E731
    timings = {"with": [], "without": [], "steady_with": [], "steady_without": []}
    for i in range(repeat):
        # Worst case: the dead half's markers are re-broken before each measured request (of
        # both variants, so both read freshly updated rows), so every request finds N/2 stale
        # markers and repairs min(N/2, READ_REPAIR_LIMIT) of them.
        # Interleaved, alternating which goes first, so both see the same machine noise.
        order = [("with", with_), ("without", without)]
        for name, fn in order if i % 2 else reversed(order):
            remark(chats)
            timings[name].append(_time(fn))
    with_()  # repaired: from here on only the live half carries markers
    for i in range(repeat):
        order = [("steady_with", with_), ("steady_without", without)]
        for name, fn in order if i % 2 else reversed(order):
            timings[name].append(_time(fn))
    result = {"redis_round_trips": round_trips, "sql_queries": len(queries)}
    result.update({f"{name}_ms": statistics.median(values) * 1000 for name, values in timings.items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    db = connection.vendor
    print(f"database={db} redis={'embedded' if os.environ.get('MOTHERSHIP_EMBEDDED_REDIS') else 'REDIS_URL'}")
    for n in (10, args.chats):
        user, workspace, chats = setup(n)
        try:
            r = measure(user, workspace, chats, args.repeat)
        finally:
            get_redis().delete(*[locks.lock_key(c.id) for c in chats])
            workspace.delete()
            user.delete()
        print(
            f"N={n:>5}  redis round trips/list={r['redis_round_trips']}  sql queries/list={r['sql_queries']}\n"
            f"         worst case (N/2 stale markers re-broken before every list): p50 with={r['with_ms']:.2f} ms  without={r['without_ms']:.2f} ms  "
            f"ratio={r['with_ms'] / r['without_ms']:.2f}\n"
            f"         steady state (N/2 live markers, nothing to repair): p50 with={r['steady_with_ms']:.2f} ms  "
            f"without={r['steady_without_ms']:.2f} ms  ratio={r['steady_with_ms'] / r['steady_without_ms']:.2f}"
        )


if __name__ == "__main__":
    main()
