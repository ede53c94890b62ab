"""Spend by workspace, user and model for a period, from the ledger (turns and warms)."""

from __future__ import annotations

import datetime
import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from chats.models import Workspace
from mothership.infra.uuids import parse_uuid
from spend.selectors import spend_report


def _day(value: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Print spend by workspace, user and model (warms have no user) for a period: this month by default."

    def add_arguments(self, parser):
        parser.add_argument("--workspace", help="Only this workspace (its id).")
        parser.add_argument("--since", help="First day (YYYY-MM-DD, UTC); the first of this month by default.")
        parser.add_argument("--until", help="Last day, included (YYYY-MM-DD, UTC); today by default.")
        parser.add_argument("--json", action="store_true", help="Print JSON: the period and one object per row.")

    def handle(self, *args, **options):
        today = timezone.localdate()
        since = _day(options["since"]) if options["since"] else today.replace(day=1)
        until = _day(options["until"]) if options["until"] else today
        if until < since:
            raise CommandError("--until is before --since.")
        workspace_id = None
        if options["workspace"]:
            workspace_id = parse_uuid(options["workspace"])
            if workspace_id is None or not Workspace.objects.filter(pk=workspace_id).exists():
                raise CommandError(f"No workspace {options['workspace']!r}.")
        tz = timezone.get_current_timezone()
        rows = spend_report(
            since=datetime.datetime.combine(since, datetime.time(), tzinfo=tz),
            until=datetime.datetime.combine(until + datetime.timedelta(days=1), datetime.time(), tzinfo=tz),
            workspace_id=workspace_id,
        )
        total = sum(r["cost_usd"] for r in rows)
        if options["json"]:
            self.stdout.write(
                json.dumps({"since": since.isoformat(), "until": until.isoformat(), "total_usd": total, "rows": rows})
            )
            return
        self.stdout.write(f"spend from {since} to {until} (UTC)")
        if not rows:
            self.stdout.write("nothing was spent")
            return
        self.stdout.write(
            f"{'workspace':24}  {'user':16}  {'model':28}  {'kind':4}  {'charges':>7}  {'tokens in':>10}  {'out':>8}  {'USD':>12}"
        )
        for r in rows:
            tokens_in = r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"]
            self.stdout.write(
                f"{r['workspace'][:24]:24}  {(r['user'] or '(warms)')[:16]:16}  {r['model'][:28]:28}  {r['kind']:4}  "
                f"{r['charges']:>7}  {tokens_in:>10}  {r['output_tokens']:>8}  {r['cost_usd']:>12.6f}"
            )
        self.stdout.write(f"{'total':>112}  {total:>12.6f}")
