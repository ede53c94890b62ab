"""Close a conversation, exactly as the API's close does: warming off, the running turn stopped."""

from __future__ import annotations

import json

import redis
from django.core.management.base import BaseCommand, CommandError

from chats.commands import chat_arg
from mothership.services import chat_close


class Command(BaseCommand):
    help = "Close a chat: disable its cache warming (stop reason 'closed'), stop its running turn, record closed_at."

    def add_arguments(self, parser):
        parser.add_argument("chat_id")
        parser.add_argument("--json", action="store_true", help="Print the API's answer as JSON.")

    def handle(self, *args, chat_id, **options):
        chat = chat_arg(chat_id)
        try:
            answer = chat_close(chat=chat)
        except redis.RedisError as exc:
            raise CommandError(f"Redis is unreachable ({exc}); nothing was changed.") from exc
        if options["json"]:
            self.stdout.write(json.dumps(answer))
            return
        parts = [f"closed {chat.pk}"]
        parts.append(f"stopped turn {answer['stream_id']}" if answer["cancelled"] else "no turn was running")
        parts.append("warming disabled" if answer["warming_disabled"] else "warming was off")
        self.stdout.write("; ".join(parts))
