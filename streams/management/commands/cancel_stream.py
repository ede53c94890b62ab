"""Stop one turn, exactly as the API's cancel does. Exit status 1 when nothing was stopped."""

from __future__ import annotations

import json

import redis
from django.core.management.base import BaseCommand, CommandError

from chats.commands import chat_arg
from chats.selectors import parse_uuid
from streams.services import stream_cancel


class Command(BaseCommand):
    help = (
        "Cancel a chat's live stream by id (owner-aware: a stale id never stops a newer turn). Exits 1 if nothing was cancelled."
    )

    def add_arguments(self, parser):
        parser.add_argument("chat_id")
        parser.add_argument("stream_id")
        parser.add_argument("--json", action="store_true", help="Print the API's answer as JSON.")

    def handle(self, *args, chat_id, stream_id, **options):
        stream_pk = parse_uuid(stream_id)
        if stream_pk is None:
            raise CommandError(f"Not a stream id: {stream_id!r}")
        chat = chat_arg(chat_id)
        try:
            outcome = stream_cancel(chat=chat, stream_id=stream_pk, reason="user")
        except redis.RedisError as exc:
            raise CommandError(f"Redis is unreachable ({exc}); nothing was changed.") from exc
        answer = outcome.as_dict()
        if options["json"]:
            self.stdout.write(json.dumps(answer))
        elif outcome.cancelled:
            self.stdout.write(
                f"cancelled {outcome.stream_id}"
                + ("" if outcome.settled else " (the worker did not answer; finalized from the event log)")
            )
        else:
            self.stdout.write(f"not cancelled: {outcome.reason}")
        if not outcome.cancelled:
            raise SystemExit(1)
