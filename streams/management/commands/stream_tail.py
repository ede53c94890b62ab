"""Print a stream's events as they happen: the log first, then live, until its terminal event."""

from __future__ import annotations

import json
import time

import redis
from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand, CommandError

from chats.selectors import parse_uuid
from mothership.infra import groups
from mothership.infra.redis import get_redis
from streams import eventlog, events
from streams.models import Stream


class Command(BaseCommand):
    help = "Follow a stream from a terminal: replay its event log, then print live events until it ends."

    def add_arguments(self, parser):
        parser.add_argument("stream_id")
        parser.add_argument("--json", action="store_true", help="One JSON event per line (as sockets receive them).")
        parser.add_argument(
            "--timeout", type=float, default=0, help="Give up after this many seconds without an event (0: never)."
        )

    def handle(self, *args, stream_id, **options):
        pk = parse_uuid(stream_id)
        stream = Stream.objects.filter(pk=pk).first() if pk else None
        if stream is None:
            raise CommandError(f"No stream {stream_id!r}.")
        layer = get_channel_layer()
        try:
            pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
            # Subscribe first, then read the log: nothing published in between is missed.
            pubsub.subscribe(groups.group_channel(groups.chat_group(stream.chat_id)))
            last_seq = 0
            for event in eventlog.read(stream.pk):
                last_seq = self.emit(event, options["json"])
                if event["type"] in events.TERMINAL_TYPES:
                    return
            if not Stream.objects.filter(pk=stream.pk, status__in=Stream.LIVE_STATUSES).exists():
                # Over: whatever it wrote since the read above is in the log, if still retained.
                for event in eventlog.read(stream.pk, after_seq=last_seq):
                    last_seq = self.emit(event, options["json"])
                    if event["type"] in events.TERMINAL_TYPES:
                        return
                self.stderr.write("the stream is over and its event log is no longer retained")
                return
            quiet_since = time.monotonic()
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    if options["timeout"] and time.monotonic() - quiet_since > options["timeout"]:
                        raise CommandError(f"no event for {options['timeout']} s")
                    continue
                event = events.from_group_message(layer.deserialize(message["data"])) or {}
                if event.get("streamId") != str(stream.pk) or event["seq"] <= last_seq:
                    continue
                if event["seq"] > last_seq + 1:  # a live message was lost: fill the hole from the log
                    for missed in eventlog.read(stream.pk, after_seq=last_seq):
                        if missed["seq"] >= event["seq"]:
                            break
                        last_seq = self.emit(missed, options["json"])
                last_seq = self.emit(event, options["json"])
                quiet_since = time.monotonic()
                if event["type"] in events.TERMINAL_TYPES:
                    return
        except redis.RedisError as exc:
            raise CommandError(f"Redis is unreachable ({exc}).") from exc
        except KeyboardInterrupt:
            return

    def emit(self, event: dict, as_json: bool) -> int:
        if as_json:
            self.stdout.write(json.dumps(event))
        elif event["type"] == events.DELTA:
            self.stdout.write(event["text"], ending="")
        else:
            extra = {k: v for k, v in event.items() if k not in ("type", "seq", "conversationId", "streamId")}
            self.stdout.write(f"\n[{event['seq']}] {event['type']} {json.dumps(extra) if extra else ''}".rstrip())
        self.stdout.flush()
        return event["seq"]
