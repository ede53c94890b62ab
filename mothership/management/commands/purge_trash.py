"""Purge the trash now, exactly as the beat task does: chats deleted more than MOTHERSHIP_TRASH_DAYS ago."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand

from mothership.services import trash_purge


class Command(BaseCommand):
    help = (
        "Delete for good the chats in the trash for longer than MOTHERSHIP_TRASH_DAYS, with their messages and "
        "streams (the spend ledger is kept)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Only say what would be purged.")
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args, **options):
        outcome = trash_purge(dry_run=options["dry_run"])
        if options["json"]:
            self.stdout.write(json.dumps(outcome))
            return
        days = settings.MOTHERSHIP_TRASH_DAYS
        if options["dry_run"]:
            self.stdout.write(
                f"would purge {outcome['chats']} chats in the trash for over {days} days ({outcome['streams']} streams)"
            )
        else:
            self.stdout.write(
                f"purged {outcome['chats']} chats in the trash for over {days} days "
                f"({outcome['messages']} messages, {outcome['streams']} streams); the spend ledger is kept"
            )
