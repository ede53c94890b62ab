"""Every read of streams: the live snapshot, membership of a stream in a chat, who may stop a turn, the event log."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import redis
from django.conf import settings
from django.utils import timezone

from chats.selectors import user_may_manage
from mothership.infra.redis import get_redis
from streams import approvals, eventlog, locks
from streams.models import Stream
from streams.providers import Usage
from streams.providers.pricing import usage_cost


@dataclass(frozen=True)
class Liveness:
    owners: dict[str, str | None]  # each chat's lock owner, by chat id
    last_event: dict[str, int | None]  # epoch ms of each stream's latest event, by stream id (None before its first)
    waiting: dict[str, str | None]  # the tool call each stream waits on a person for, by stream id
    running: dict[str, tuple[str, int] | None]  # the tool each stream runs, and since when (epoch ms)


def streams_liveness(marked: list[tuple]) -> Liveness:
    """For ``(chat_id, stream_id)`` pairs, in one MGET: each chat's lock, each stream's last event
    the tool call it waits on a person for, and the tool it runs (``streams.approvals``)."""
    if not marked:
        return Liveness({}, {}, {}, {})
    n = len(marked)
    keys = [locks.lock_key(chat_id) for chat_id, _ in marked]
    keys += [eventlog.activity_key(stream_id) for _, stream_id in marked]
    keys += [approvals.waiting_key(stream_id) for _, stream_id in marked]
    keys += [approvals.running_key(stream_id) for _, stream_id in marked]
    values = get_redis().mget(keys)
    return Liveness(
        owners={str(chat_id): (v.decode() if v is not None else None) for (chat_id, _), v in zip(marked, values)},
        last_event={str(s): (int(v) if v is not None else None) for (_, s), v in zip(marked, values[n : 2 * n])},
        waiting={str(s): (v.decode() if v is not None else None) for (_, s), v in zip(marked, values[2 * n : 3 * n])},
        running={str(s): approvals.running_of(v) for (_, s), v in zip(marked, values[3 * n :])},
    )


def stream_in_chat(*, chat_id, stream_id) -> bool:
    return Stream.objects.filter(pk=stream_id, chat_id=chat_id).exists()


STOP_REFUSED = "Only the member who sent this message, the chat's creator or an owner of its workspace may stop its reply."


def user_may_stop(*, user, chat, stream_id) -> bool:
    """Whether ``user`` (a member of ``chat``) may stop the turn ``stream_id``: the member who sent
    it, the chat's creator, or an owner of its workspace (as Close: ``user_may_manage``). An id of no
    turn of this chat stops nothing, and the stop's answer says so (``not_active``)."""
    senders = list(Stream.objects.filter(pk=stream_id, chat_id=chat.pk).values_list("started_by_id", flat=True)[:1])
    if not senders:
        return True
    return senders[0] == user.pk or user_may_manage(user=user, chat=chat)


def stream_snapshot(*, stream_id) -> dict | None:
    """A live stream's snapshot (status, last seq, text so far), or None.

    The text is null when Redis is unreachable: a reader never fails for want of the log.
    """
    stream = Stream.objects.filter(pk=stream_id).first()
    if stream is None:
        return None
    try:
        log = eventlog.read(stream.id)
    except redis.RedisError:
        log = None
    return {
        "id": str(stream.id),
        "status": stream.status,
        "last_seq": log[-1]["seq"] if log else stream.last_seq,
        "text": eventlog.snapshot_text(log) if log is not None else None,
        "tool_calls": eventlog.tool_calls_of(log) if log is not None else [],
        "assistant_message_id": str(stream.assistant_message_id) if stream.assistant_message_id else None,
        "started_by": stream.started_by_id,  # the page offers Stop to its sender (and creator, owners)
        "provider": stream.provider,
        "model": stream.model,
    }


def message_cost(message) -> float | None:
    """What an assistant message cost, in USD, from its usage and the model its stream used;
    None for a user message."""
    if message.role != "assistant":
        return None
    stream = message.stream if message.stream_id else None
    usage = Usage(**message.usage)
    return round(usage_cost(usage, stream.model if stream else ""), 8)


STUCK_SCAN = 1000  # the oldest live turns looked at for stuck ones, per scrape


def streams_live_counts(*, now: datetime.datetime | None = None) -> tuple[int, int]:
    """Live turns (queued or streaming), and how many of them are stuck: older than the lock's TTL
    and no longer holding their chat's lock, which the sweeper should have sealed (``/metrics``)."""
    now = now or timezone.now()
    live = Stream.objects.filter(status__in=Stream.LIVE_STATUSES)
    old = list(
        live.filter(created_at__lt=now - datetime.timedelta(seconds=settings.MOTHERSHIP_STREAM_LOCK_TTL))
        .order_by("created_at")
        .values_list("pk", "chat_id")[:STUCK_SCAN]
    )
    owners = locks.lock_owners(chat_id for _, chat_id in old)
    return live.count(), sum(1 for pk, chat_id in old if owners.get(str(chat_id)) != str(pk))
