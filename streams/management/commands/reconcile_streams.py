"""Finalize orphaned streams now (what the beat sweeper does every few seconds)."""

from __future__ import annotations

import json

import redis
from django.core.management.base import BaseCommand, CommandError

from chats.selectors import parse_uuid
from streams.services import streams_sweep


class Command(BaseCommand):
    help = "Interrupt every queued/streaming stream whose liveness lock is gone, salvaging its text."

    def add_arguments(self, parser):
        parser.add_argument("stream_ids", nargs="*", help="Only these streams (default: all live streams).")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, stream_ids, **options):
        bad = [s for s in stream_ids if parse_uuid(s) is None]
        if bad:
            raise CommandError(f"Not stream ids: {', '.join(bad)}")
        try:
            report = streams_sweep(stream_ids=stream_ids or None)
        except redis.RedisError as exc:
            raise CommandError(f"Redis is unreachable ({exc}); nothing was changed.") from exc
        if options["json"]:
            self.stdout.write(json.dumps(report))
            return
        self.stdout.write(
            f"checked {report['checked']} live streams: {report['alive']} alive, "
            f"{len(report['interrupted'])} interrupted, {report['already_finalized']} already finalized; "
            f"{report['markers_cleared']} stale markers cleared"
        )
        if report["waiting"]:
            self.stdout.write(
                f"{report['waiting']} without a lock left for now: Redis started less than a lock TTL ago, "
                f"so their workers may still take their locks again ({len(report['requeued'])} queued again)"
            )
        for stream_id in report["interrupted"]:
            self.stdout.write(f"  interrupted {stream_id}")
