"""Live streams as the liveness lock sees them: owner, age, last heartbeat, last seq."""

from __future__ import annotations

import json
import time

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from mothership.infra.redis import get_redis
from streams import eventlog, locks
from streams.models import Stream


def live_streams() -> list[dict]:
    """One row per queued/streaming stream; one Redis pipeline for all of them."""
    streams = list(Stream.objects.filter(status__in=Stream.LIVE_STATUSES).select_related("chat").order_by("created_at"))
    if not streams:
        return []
    pipe = get_redis().pipeline(transaction=False)
    for s in streams:
        pipe.get(locks.lock_key(s.chat_id))
        pipe.pttl(locks.lock_key(s.chat_id))
        pipe.xrevrange(eventlog.log_key(s.pk), count=1)
    replies = pipe.execute()
    ttl_ms = settings.MOTHERSHIP_STREAM_LOCK_TTL * 1000
    now = timezone.now()
    rows = []
    for i, s in enumerate(streams):
        owner, pttl, last = replies[3 * i : 3 * i + 3]
        owner = owner.decode() if owner else None
        rows.append(
            {
                "stream": str(s.pk),
                "chat": str(s.chat_id),
                "title": s.chat.title,
                "status": s.status,
                "lock_owner": owner,
                "owns_lock": owner == str(s.pk),
                "age_seconds": round((now - s.created_at).total_seconds(), 1),
                # The heartbeat resets the TTL: how long ago it last did, from what is left of it.
                "heartbeat_age_seconds": round((ttl_ms - pttl) / 1000, 1) if owner == str(s.pk) and pttl and pttl > 0 else None,
                "last_seq": int(last[0][0].decode().split("-")[0]) if last else 0,
            }
        )
    return rows


class Command(BaseCommand):
    help = "List live (queued/streaming) streams with their lock owner, age, last heartbeat and last seq."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print JSON (one object per stream).")
        parser.add_argument("--watch", type=float, metavar="SECONDS", help="Refresh every SECONDS until Ctrl-C.")

    def handle(self, *args, **options):
        if options["watch"] is not None and options["watch"] <= 0:
            raise CommandError("--watch takes a positive number of seconds.")
        try:
            while True:
                self.show(live_streams(), as_json=options["json"])
                if options["watch"] is None:
                    return
                time.sleep(options["watch"])
        except redis.RedisError as exc:
            raise CommandError(f"Redis is unreachable ({exc}).") from exc
        except KeyboardInterrupt:
            return

    def show(self, rows: list[dict], *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(rows))
            return
        self.stdout.write(f"{timezone.now():%H:%M:%S}  {len(rows)} live stream(s)")
        for r in rows:
            beat = "-" if r["heartbeat_age_seconds"] is None else f"{r['heartbeat_age_seconds']}s"
            owner = (
                "owns its lock"
                if r["owns_lock"]
                else f"LOCK {'held by ' + r['lock_owner'] if r['lock_owner'] else 'GONE (the sweeper will interrupt it)'}"
            )
            self.stdout.write(
                f"  {r['stream']}  {r['status']:9}  age {r['age_seconds']:>6}s  heartbeat {beat:>6} ago  seq {r['last_seq']:>5}  {owner}  · {r['title']}"
            )
