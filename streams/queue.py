"""A queued turn stays alive for as long as its task waits in the turn queue.

A turn's lock is taken at the send with the usual TTL, and only a worker running the turn renews
it. So a turn that waits in the queue longer than the TTL (every worker thread busy) would be
taken for dead: the sweeper would end it ``interrupted / never_started`` and the worker, when it
finally took the task, would find its lock gone. Instead each turn worker runs a keeper thread
that, every heartbeat, renews the lock of every queued turn whose task is still in the queue
(the task's id is the stream's id). A queued turn whose task is gone (the worker that took it
died before the claim, the queue was lost) is not renewed, and the sweeper ends it as before.

Workers take a task only when they have a thread for it (``CELERY_WORKER_DISABLE_PREFETCH``), so
a waiting task is always in the queue, never in a busy worker's memory.
"""

from __future__ import annotations

import json
import logging
import threading

from django.conf import settings

from mothership.infra import database
from mothership.infra import redis as redis_infra
from mothership.infra.redis import get_redis
from streams import locks
from streams.models import Stream

logger = logging.getLogger(__name__)


def waiting_task_ids(queue: str) -> set[str]:
    """The ids of the tasks waiting in a Celery queue on Redis (kombu keeps them in a list)."""
    ids = set()
    for raw in get_redis().lrange(queue, 0, -1):
        try:
            ids.add(json.loads(raw)["headers"]["id"])
        except (ValueError, KeyError, TypeError):
            continue  # not a Celery message of this protocol: nothing of ours
    return ids


def queued_keep_alive(*, queue: str) -> int:
    """Renew the locks of the queued turns still waiting in ``queue``. Returns how many."""
    queued = list(Stream.objects.filter(status=Stream.Status.QUEUED).values_list("id", "chat_id"))
    if not queued:
        return 0
    waiting = waiting_task_ids(queue)
    alive = [(chat_id, stream_id) for stream_id, chat_id in queued if str(stream_id) in waiting]
    return locks.locks_heartbeat(alive)


class QueueKeeper:
    """The thread a turn worker runs beside its pool: ``queued_keep_alive`` every heartbeat."""

    def __init__(self, *, queue: str):
        self.queue = queue
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="queue-keeper", daemon=True)
        self.away: str | None = None  # what is unavailable, said once until it answers again

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        from django.db import close_old_connections

        while not self.stopping.wait(settings.MOTHERSHIP_STREAM_HEARTBEAT):
            try:
                queued_keep_alive(queue=self.queue)
            except (*redis_infra.UNAVAILABLE, *database.UNAVAILABLE) as exc:  # away for a moment: the next beat retries
                if self.away is None:
                    logger.warning("could not renew the locks of queued turns (%s); trying again every beat", exc)
                self.away = str(exc)
            except Exception:
                logger.exception("could not renew the locks of queued turns")
            else:
                if self.away is not None:
                    logger.warning("renewing the locks of queued turns again")
                self.away = None
            finally:
                close_old_connections()
