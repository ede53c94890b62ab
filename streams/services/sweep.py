"""The sweeper: finalize orphaned streams for good, then clear markers nothing backs any more.

For one lock TTL after Redis starts (``redis_uptime``), a live stream created before it started
and with no lock at all is not taken for dead: a Redis restarted empty lost every lock, and a
live worker takes its lock again at its next event or heartbeat (the sweeper sealing it first
would save only what the emptied log still holds). A queued one also lost its task with the
queue: the sweeper takes its lock again and enqueues it once more (a task delivered twice does
nothing the second time). After that window, a stream still without its lock is swept as usual;
a stream created since Redis started took its lock in this Redis, so it never waits.

A lock also names the worker that claimed its stream (``streams.workers``). A streaming turn whose
worker no longer exists (restarted: its slot has a newer boot; or gone: its key expired, judged only
once Redis has been up for a worker TTL, by the same reasoning as above) is sealed at once, lock or
no lock: after a whole app was killed and started again, its restored locks would otherwise keep
its turns "streaming" for a lock TTL. A queued turn names no worker and is never sealed by this.
A turn worker sweeps for lost workers as it starts (``streams_sweep_lost_workers``), so a restart
is truthful as soon as the workers are up.
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.utils import timezone

from chats.models import Chat
from chats.services import chat_markers_repair
from mothership.infra import cursors, metrics
from mothership.infra.redis import WriteRefused, get_redis, redis_uptime
from streams import locks, workers
from streams.models import Stream
from streams.services.finalize import salvage, stream_finalize
from streams.services.start import stream_enqueue

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500


def stream_interrupt_orphan(*, stream: Stream) -> bool:
    """Finalize a stream whose worker is gone: ``interrupted``, its produced text kept."""
    reason = "never_started" if stream.status == Stream.Status.QUEUED else "worker_lost"
    return stream_finalize(stream=stream, status=Stream.Status.INTERRUPTED, reason=reason, **salvage(stream).seal())


def stream_requeue(*, stream: Stream) -> bool:
    """A queued stream whose lock and task a restarted Redis lost: its lock again, its task again."""
    if not locks.lock_acquire(chat_id=stream.chat_id, stream_id=stream.pk):
        return False  # another turn took the chat meanwhile: this one is swept later
    logger.warning("stream %s lost its lock and task with a Redis restart; queued again", stream.pk)
    stream_enqueue(stream_id=stream.pk)
    return True


def streams_sweep(*, stream_ids=None) -> dict:
    """Finalize, for good, every live stream whose chat's lock it no longer owns, or whose worker is
    gone; clear stale markers.

    Lock errors raise: the sweeper never guesses that a stream is dead. A Redis that refuses writes
    is not swept at all (``writes_refused``): the locks and worker keys it shows may have expired
    only because their live owners could not write them.
    """
    if (refused := writes_refused()) is not None:
        logger.warning("redis refuses writes (%s); the sweep waits for it", refused)
        return {**_report(), "markers_cleared": 0, "skipped": refused}
    report = _sweep_orphans(stream_ids=stream_ids)
    report["markers_cleared"] = _clear_stale_markers()
    _count_finds(report)
    if report["interrupted"]:
        logger.warning("sweeper interrupted %d orphaned streams", len(report["interrupted"]))
    return report


def _count_finds(report: dict) -> None:
    for action in ("interrupted", "requeued"):
        if report[action]:
            metrics.inc(metrics.SWEEPER_FINDS, len(report[action]), label=action)


def writes_refused() -> str | None:
    """Why Redis refuses writes right now (``MISCONF``, ``NOREPLICAS``, ``READONLY``…), or None."""
    try:
        get_redis().set(_PROBE_KEY, "1", px=1000)
    except WriteRefused as exc:
        return str(exc)
    return None


_PROBE_KEY = "mothership:sweeper:probe"


def _report() -> dict:
    return {"checked": 0, "alive": 0, "interrupted": [], "already_finalized": 0, "waiting": 0, "requeued": []}


def streams_sweep_lost_workers() -> dict:
    """Seal only the streaming turns whose worker is gone (a worker starting asks this at once)."""
    if (refused := writes_refused()) is not None:
        return {**_report(), "skipped": refused}
    report = _sweep_orphans(stream_ids=None, lost_workers_only=True)
    _count_finds(report)
    if report["interrupted"]:
        logger.warning("sealed %d turns of workers that no longer exist", len(report["interrupted"]))
    return report


_ORDER = ["created_at", "pk"]


def _sweep_orphans(*, stream_ids, lost_workers_only: bool = False) -> dict:
    """Two MGETs per batch at most; a stream whose lock is still its own, and whose worker lives, is alive."""
    # A stream whose stop is being settled (its lock may already be freed by the canceller) is
    # the canceller's to finalize; it is swept only if that stop was abandoned long ago.
    stopping_since = timezone.now() - datetime.timedelta(seconds=settings.MOTHERSHIP_CANCEL_SETTLE_TIMEOUT + 30)
    qs = Stream.objects.filter(status__in=Stream.LIVE_STATUSES).exclude(cancel_requested_at__gt=stopping_since).order_by(*_ORDER)
    if stream_ids is not None:
        qs = qs.filter(pk__in=list(stream_ids))
    if lost_workers_only:
        qs = qs.filter(status=Stream.Status.STREAMING)
    report = _report()
    uptime = redis_uptime()
    # Created before Redis started (its uptime is whole seconds: within its first second, a turn
    # created since then waits too, which only delays a sweep): it may have lost its lock.
    older_than_redis = (
        timezone.now() - datetime.timedelta(seconds=uptime) if uptime < settings.MOTHERSHIP_STREAM_LOCK_TTL else None
    )
    last = None
    while True:
        # Keyset by (created_at, pk): turns created in the same instant are never skipped at a batch's edge.
        batch = list((qs if last is None else qs.filter(cursors.after(_ORDER, last, descending=False)))[:SWEEP_BATCH])
        if not batch:
            break
        last = [batch[-1].created_at, batch[-1].pk]
        owners, tags = locks.lock_owners_and_workers((s.chat_id, s.pk) for s in batch)
        running = {str(s.pk): workers.Worker.of(tags.get(str(s.pk))) for s in batch if s.status == Stream.Status.STREAMING}
        lost = workers.workers_lost({w for w in running.values() if w is not None}, redis_uptime=uptime)
        for stream in batch:
            report["checked"] += 1
            owner = owners.get(str(stream.chat_id))
            worker = running.get(str(stream.pk))
            if worker in lost:
                logger.warning("stream %s: its worker %s no longer exists", stream.pk, worker.slot)
            elif lost_workers_only or owner == str(stream.pk):
                report["alive"] += 1
                continue
            elif owner is None and older_than_redis is not None and stream.created_at < older_than_redis:
                report["waiting"] += 1
                if stream.status == Stream.Status.QUEUED and stream_requeue(stream=stream):
                    report["requeued"].append(str(stream.pk))
                continue
            if stream_interrupt_orphan(stream=stream):
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
