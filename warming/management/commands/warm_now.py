"""Warm one conversation's prompt cache now, in this process, and print what it found."""

from __future__ import annotations

import json

import redis
from django.core.management.base import BaseCommand, CommandError

from chats.commands import chat_arg
from warming.dispatch import warming_warm_now
from warming.services import warming_fields, warming_get


class Command(BaseCommand):
    help = "Warm a chat's prompt cache now (1 output token, never added to the history); works whether or not warming is on."

    def add_arguments(self, parser):
        parser.add_argument("chat_id")
        parser.add_argument("--json", action="store_true", help="Print the outcome and the surface fields as JSON.")

    def handle(self, *args, chat_id, **options):
        chat = chat_arg(chat_id)
        try:
            result = warming_warm_now(chat_id=chat.pk, inline=True)
        except redis.RedisError as exc:
            raise CommandError(f"Redis is unreachable ({exc}); nothing was warmed.") from exc
        fields = warming_fields(warming_get(chat=chat))
        if options["json"]:
            self.stdout.write(json.dumps({"outcome": result.outcome, "fields": fields}))
            return
        self.stdout.write(f"{chat.pk} ({chat.title}): {result.outcome}")
        if result.outcome == "warmed":
            self.stdout.write(
                f"  cache {fields['lastCachePct']:.1f}% · warms {fields['warmCount']} · cost ${fields['lastWarmCost']:.6f}"
            )
        elif result.outcome == "failed":
            self.stdout.write(f"  error: {fields['lastError']}")
        elif result.outcome == "skipped_streaming":
            self.stdout.write("  a reply is streaming; its end refreshes the cache anyway")
