"""Warming dispatch at scale: 10,000 enabled schedules, 1,000 due at once, two dispatchers.

Creates N enabled schedules (each chat with a short conversation), of which --due fall due at
the same instant T; the rest are due in an hour. At T two dispatchers run at once (threads,
each with its own database connection); a real Celery worker process runs the warm batches.
Prints the time to claim and enqueue every due row, how late each warm ran against T
(p50 / p99 / max), duplicate warms (a schedule warmed more than once; must be 0), and the
worker's CPU time from T until the last warm was recorded (Linux: /proc), in all and per warm.

Usage: .venv/bin/python bench/warm_dispatch.py [--schedules 10000] [--due 1000]
Uses DATABASE_URL / REDIS_URL when set (embedded defaults otherwise).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import percentile, setup_django

setup_django()


from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from chats import services  # noqa: E402
from chats.models import Chat, Message  # noqa: E402
from mothership.celery import app  # noqa: E402
from tests.support import processes  # noqa: E402
from warming import dispatch  # noqa: E402
from warming.models import WarmingSchedule  # noqa: E402


def setup(n: int, due: int, due_at):
    user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}")
    workspace = services.workspace_create(name="bench-warming", owner=user)
    chats = Chat.objects.bulk_create([Chat(workspace=workspace, title=f"warm {i}") for i in range(n)], batch_size=2000)
    Message.objects.bulk_create(
        [
            Message(chat=c, role=role, content=f"{role} says something about chat {i}")
            for i, c in enumerate(chats[:due])
            for role in ("user", "assistant")
        ],
        batch_size=2000,
    )
    later = due_at + datetime.timedelta(hours=1)
    WarmingSchedule.objects.bulk_create(
        [
            WarmingSchedule(
                chat=c, enabled=True, interval_seconds=3300, enabled_at=timezone.now(), next_warm_at=due_at if i < due else later
            )
            for i, c in enumerate(chats)
        ],
        batch_size=2000,
    )
    return user, workspace, chats[:due]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--worker-concurrency", type=int, default=16)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    queue = f"bench-warm-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    tmp = Path(tempfile.mkdtemp(prefix="mothership-bench-"))
    worker = processes.start_worker(
        tmp, name="bench-warm-worker", concurrency=args.worker_concurrency, MOTHERSHIP_CELERY_QUEUE=queue
    )
    due_at = timezone.now() + datetime.timedelta(seconds=5)
    user, workspace, due_chats = setup(args.schedules, args.due, due_at)
    try:
        while timezone.now() < due_at:
            time.sleep(0.01)
        worker_cpu = cpu_seconds(worker.pid)
        reports, errors = [], []

        def dispatcher():
            try:
                reports.append(dispatch.warming_dispatch_due())
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                connection.close()

        started = time.perf_counter()
        threads = [threading.Thread(target=dispatcher) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        claim_seconds = time.perf_counter() - started
        if errors:
            raise errors[0]
        ids = [c.pk for c in due_chats]
        deadline = time.monotonic() + 300
        while WarmingSchedule.objects.filter(chat_id__in=ids, warm_count=0).exists():
            if time.monotonic() > deadline:
                raise SystemExit("the warms did not all run within 300 s")
            time.sleep(0.2)
        if worker_cpu is not None:
            worker_cpu = cpu_seconds(worker.pid) - worker_cpu
        rows = list(WarmingSchedule.objects.filter(chat_id__in=ids).values_list("last_warm_at", "warm_count"))
        late = [(last - due_at).total_seconds() for last, _ in rows]
        duplicates = sum(count - 1 for _, count in rows)
        extra = WarmingSchedule.objects.filter(chat__workspace=workspace, warm_count__gt=0).exclude(chat_id__in=ids).count()
    finally:
        worker.stop()
        workspace.delete()
        user.delete()
    print(
        f"database={connection.vendor} schedules={args.schedules} due={args.due} dispatchers=2 worker threads={args.worker_concurrency}"
    )
    print(
        f"claim + enqueue of all due rows: {claim_seconds * 1000:.0f} ms  "
        f"(claimed {sum(r['claimed'] for r in reports)} in {sum(r['batches'] for r in reports)} batches: "
        + ", ".join(f"dispatcher {i + 1} {r['claimed']} rows/{r['batches']} batches" for i, r in enumerate(reports))
        + ")"
    )
    print(
        f"lateness of each warm against its nextWarmAt: p50={statistics.median(late) * 1000:.0f} ms  p99={percentile(late, 99) * 1000:.0f} ms  max={max(late) * 1000:.0f} ms"
    )
    print(f"duplicate warms: {duplicates}   warms of schedules not due: {extra}")
    if worker_cpu is not None:
        print(f"worker CPU from T to the last warm: {worker_cpu * 1000:.0f} ms ({worker_cpu * 1000 / args.due:.2f} ms per warm)")


if __name__ == "__main__":
    main()
