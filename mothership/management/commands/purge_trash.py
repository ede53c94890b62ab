"""Purge now, exactly as the beat task does: chats deleted more than MOTHERSHIP_TRASH_DAYS ago (their
files too), and uploads no message named within MOTHERSHIP_ATTACHMENT_UNSENT_HOURS."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand

from mothership.services import purge_due


class Command(BaseCommand):
    help = (
        "Delete for good the chats in the trash for longer than MOTHERSHIP_TRASH_DAYS, with their messages, streams and "
        "attached files (the spend ledger is kept), and the uploads no message named within "
        "MOTHERSHIP_ATTACHMENT_UNSENT_HOURS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Only say what would be purged.")
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args, **options):
        outcome = purge_due(dry_run=options["dry_run"])
        if options["json"]:
            self.stdout.write(json.dumps(outcome))
            return
        days, hours = settings.MOTHERSHIP_TRASH_DAYS, settings.MOTHERSHIP_ATTACHMENT_UNSENT_HOURS
        unsent = f"{outcome['unsent_attachments']} uploads no message named within {hours:g} hours"
        if options["dry_run"]:
            self.stdout.write(
                f"would purge {outcome['chats']} chats in the trash for over {days} days ({outcome['streams']} streams, "
                f"{outcome['attachments']} attached files) and {unsent}"
            )
        else:
            self.stdout.write(
                f"purged {outcome['chats']} chats in the trash for over {days} days "
                f"({outcome['messages']} messages, {outcome['streams']} streams, {outcome['attachments']} attached files) "
                f"and {unsent}; the spend ledger is kept"
            )
