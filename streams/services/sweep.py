"""The sweeper: finalize orphaned streams for good, then clear markers nothing backs any more."""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.utils import timezone

from chats.models import Chat
from chats.services import chat_markers_repair
from streams import locks
from streams.models import Stream
from streams.services.finalize import salvage, stream_finalize

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500


def stream_interrupt_orphan(*, stream: Stream) -> bool:
    """Finalize a stream whose worker is gone: ``interrupted``, its produced text kept."""
    text, last_seq, usage = salvage(stream)
    reason = "never_started" if stream.status == Stream.Status.QUEUED else "worker_lost"
    return stream_finalize(
        stream=stream, status=Stream.Status.INTERRUPTED, reason=reason, text=text, last_seq=last_seq, usage=usage
    )


def streams_sweep(*, stream_ids=None) -> dict:
    """Finalize, for good, every live stream whose chat's lock it no longer owns; clear stale markers.

    Lock errors raise: the sweeper never guesses that a stream is dead.
    """
    report = _sweep_orphans(stream_ids=stream_ids)
    report["markers_cleared"] = _clear_stale_markers()
    if report["interrupted"]:
        logger.warning("sweeper interrupted %d orphaned streams", len(report["interrupted"]))
    return report


def _sweep_orphans(*, stream_ids) -> dict:
    """One MGET per batch; a stream whose lock is still its own is alive (queued ones too)."""
    # A stream whose stop is being settled (its lock may already be freed by the canceller) is
    # the canceller's to finalize; it is swept only if that stop was abandoned long ago.
    stopping_since = timezone.now() - datetime.timedelta(seconds=settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT + 30)
    qs = (
        Stream.objects.filter(status__in=Stream.LIVE_STATUSES)
        .exclude(cancel_requested_at__gt=stopping_since)
        .order_by("created_at")
    )
    if stream_ids is not None:
        qs = qs.filter(pk__in=list(stream_ids))
    report = {"checked": 0, "alive": 0, "interrupted": [], "already_finalized": 0}
    last_created = None
    while True:
        batch = list((qs if last_created is None else qs.filter(created_at__gt=last_created))[:SWEEP_BATCH])
        if not batch:
            break
        last_created = batch[-1].created_at
        owners = locks.lock_owners({s.chat_id for s in batch})
        for stream in batch:
            report["checked"] += 1
            if owners.get(str(stream.chat_id)) == str(stream.pk):
                report["alive"] += 1
            elif stream_interrupt_orphan(stream=stream):
                report["interrupted"].append(str(stream.pk))
            else:
                report["already_finalized"] += 1
        if len(batch) < SWEEP_BATCH:
            break
    return report


def _clear_stale_markers() -> int:
    """Markers that point at a stream no longer live (finalized elsewhere, or never existed) and whose lock is gone.

    Live streams are few, so this scans from them.
    """
    live_streams = Stream.objects.filter(status__in=Stream.LIVE_STATUSES).values("pk")
    marked = list(
        Chat.objects.filter(active_stream_id__isnull=False)
        .exclude(active_stream_id__in=live_streams)
        .values_list("pk", "active_stream_id")[:SWEEP_BATCH]
    )
    if not marked:
        return 0
    owners = locks.lock_owners(pk for pk, _ in marked)
    return chat_markers_repair(repairs={pk: (marker, None) for pk, marker in marked if owners.get(str(pk)) is None})
