"""A table of warming schedules: what is on, when the next warm is due, how well the cache holds."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from warming.models import WarmingSchedule
from warming.services import warming_fields


class Command(BaseCommand):
    help = "List enabled warming schedules (--all: also the stopped ones, with their stop reason)."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Include disabled schedules.")
        parser.add_argument("--json", action="store_true", help="Print JSON (one object per schedule).")

    def handle(self, *args, **options):
        qs = WarmingSchedule.objects.select_related("chat").order_by("next_warm_at", "chat_id")
        if not options["all"]:
            qs = qs.filter(enabled=True)
        rows = [{"chat": str(s.chat_id), "title": s.chat.title, **warming_fields(s)} for s in qs]
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        if not rows:
            self.stdout.write("no enabled warming schedules" if not options["all"] else "no warming schedules")
            return
        now_ms = timezone.now().timestamp() * 1000
        self.stdout.write(
            f"{'chat':36}  {'on':3}  {'every':>6}  {'next in':>8}  {'last cache %':>12}  {'retention %':>11}  {'warms':>5}  stop reason / last error"
        )
        for r in rows:
            next_at = r["timer"]["nextWarmAt"]
            next_in = f"{(next_at - now_ms) / 1000:.0f} s" if next_at is not None else "-"
            pct = "-" if r["lastCachePct"] is None else f"{r['lastCachePct']:.1f}"
            retention = "-" if r["cacheRetention"] is None else f"{r['cacheRetention']:.1f}"
            note = r["stopReason"] or r["lastError"] or ""
            self.stdout.write(
                f"{r['chat']:36}  {'yes' if r['enabled'] else 'no':3}  {r['interval_seconds']:>5}s  {next_in:>8}  {pct:>12}  {retention:>11}  {r['warmCount']:>5}  {note}"
            )
