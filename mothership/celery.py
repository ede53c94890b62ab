"""The Celery app. All beat schedules are declared here, in one place."""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings

from celery import Celery
from celery.app import backends
from celery.beat import PersistentScheduler, SchedulingError
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import (
    beat_init,
    before_task_publish,
    setup_logging,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutdown,
)
from kombu.exceptions import OperationalError
from redis import RedisError

from mothership.infra import logs, metrics
from mothership.infra import redis as _redis  # noqa: F401 (its fix-ups of redis-py, in every process)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mothership.settings")

logger = logging.getLogger("mothership.beat")


class _App(Celery):
    """Celery, its result backend's class looked up once per process. Celery keeps a backend per
    thread and looked its class up for each (an entry-points scan of every installed package,
    ~20 ms under load): a burst's first sends and turns, each in a new thread, paid it each."""

    @functools.cached_property
    def _backend_class(self):
        return backends.by_url(self.backend_cls or self.conf.result_backend, self.loader)

    def _get_backend(self):
        backend, url = self._backend_class
        return backend(app=self, url=url)


app = _App("mothership")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# The turn itself is the one task on the default queue; every other task is background work.
TURN_TASKS = frozenset({"streams.run_stream"})


def background_queue(turn_queue: str) -> str:
    return f"{turn_queue}.background"


def route_task(name, args, kwargs, options, task=None, **kw):
    """CELERY_TASK_ROUTES: turns on the default queue, the rest on its background queue."""
    if name in TURN_TASKS:
        return None
    return {"queue": background_queue(app.conf.task_default_queue)}


def beat_schedule() -> dict:
    from django.conf import settings

    return {
        # Finalizes streams whose worker died; expires so a stalled beat never piles up sweeps.
        "streams-sweep": {
            "task": "streams.sweep",
            "schedule": settings.MOTHERSHIP_SWEEP_INTERVAL,
            "options": {"expires": settings.MOTHERSHIP_SWEEP_INTERVAL},
        },
        # Claims due warming schedules in batches; one Celery message per batch, never a beat
        # row per conversation.
        "warming-dispatch": {
            "task": "warming.dispatch",
            "schedule": settings.MOTHERSHIP_WARMING_TICK,
            "options": {"expires": settings.MOTHERSHIP_WARMING_TICK},
        },
        # Deletes for good the chats in the trash for longer than MOTHERSHIP_TRASH_DAYS (their files
        # too), and the uploads no message named within MOTHERSHIP_ATTACHMENT_UNSENT_HOURS.
        "trash-purge": {
            "task": "mothership.purge_trash",
            "schedule": settings.MOTHERSHIP_TRASH_PURGE_INTERVAL,
            "options": {"expires": settings.MOTHERSHIP_TRASH_PURGE_INTERVAL},
        },
    }


@app.on_after_configure.connect
def _install_beat_schedule(sender, **kwargs):
    sender.conf.beat_schedule = beat_schedule()


@setup_logging.connect
def _app_logging(**kwargs):
    """Workers and beat log as the web does (``LOGGING``: one handler on the root, the app's format
    and level): without a receiver here Celery adds handlers of its own, and its ``-l`` level
    would override ``MOTHERSHIP_LOG_LEVEL``."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


# A task's lines carry the id of the request that enqueued it (a turn's, the POST that sent it).
REQUEST_ID_HEADER = "mothership_request_id"


@before_task_publish.connect
def _carry_request_id(headers=None, **kwargs):
    request_id = logs.current().get("request_id")
    if request_id and headers is not None:
        headers[REQUEST_ID_HEADER] = request_id


@task_prerun.connect
def _task_log_context(task=None, **kwargs):
    """Each task starts with a log context of its own (a pool thread's last task's is gone)."""
    logs.start(request_id=getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None)


@worker_init.connect
@beat_init.connect
def _heartbeat_file(**kwargs):
    """Beats for the supervisor (``mothership.infra.alive``), from before the broker is reached."""
    from mothership.infra.alive import beat_from_thread

    beat_from_thread()


_ready_heartbeats: list = []


@worker_ready.connect
def _ready_heartbeat(sender, **kwargs):
    """Each worker beats for /readyz on every queue it consumes (the turn queue, the background one or
    both), from a thread of its own, once it is ready to take tasks (mothership.infra.heartbeats)."""
    from mothership.infra.heartbeats import WorkerHeartbeat

    heartbeat = WorkerHeartbeat(name=sender.hostname, queues=sorted(queue.name for queue in sender.task_consumer.queues))
    heartbeat.start()
    _ready_heartbeats.append(heartbeat)


@worker_shutdown.connect
def _stop_ready_heartbeat(**kwargs):
    while _ready_heartbeats:
        _ready_heartbeats.pop().stopping.set()


@worker_shutdown.connect
def _flush_metrics(**kwargs):
    """A worker stopping adds its last counts to the totals (a killed one loses at most a flush's worth)."""
    metrics.flush()


@worker_ready.connect
def _quiet_reconnects(**kwargs):
    """Celery warns, at every broker reconnect, that its default for cancelling running tasks on a
    connection loss will change; the setting is given (False: turns ride out a Redis outage).
    (Here, once Celery's logging set-up has put its own "always" filters first.)"""
    warnings.filterwarnings(
        "ignore", category=CPendingDeprecationWarning, message=r"(?s).*worker_cancel_long_running_tasks_on_connection_loss"
    )


class Scheduler(PersistentScheduler):
    """Beat's scheduler (``CELERY_BEAT_SCHEDULER``): a broker (Redis) away is one line when it
    goes and one when it is back, not a traceback for every task due meanwhile (a warming tick
    is due every second); a task sent is logged at debug level, not every second at info."""

    broker_away = False
    _ticked_at: float | None = None  # when this process last wrote its tick for /readyz (monotonic)
    _tick_unwritten = False

    def tick(self, *args, **kwargs):
        """One pass of beat's loop; beat's own clock for /readyz: its tick is written to Redis at most
        once per MOTHERSHIP_READY_HEARTBEAT, and the loop never sleeps longer than that between passes."""
        from django.conf import settings

        interval = super().tick(*args, **kwargs)
        now = time.monotonic()
        if self._ticked_at is None or now - self._ticked_at >= settings.MOTHERSHIP_READY_HEARTBEAT:
            self._ticked_at = now
            self._write_tick()
        return min(interval, settings.MOTHERSHIP_READY_HEARTBEAT)

    def _write_tick(self) -> None:
        from mothership.infra.heartbeats import beat_tick

        try:
            beat_tick(queue=self.app.conf.task_default_queue)
        except RedisError as exc:  # Redis away: /readyz says so itself; said once per outage
            if not self._tick_unwritten:
                logger.warning("beat could not write its tick (%s); trying again at every heartbeat", exc)
            self._tick_unwritten = True
            return
        self._tick_unwritten = False

    def apply_entry(self, entry, producer=None):
        logger.debug("sending due task %s (%s)", entry.name, entry.task)
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except SchedulingError as exc:
            cause = exc.__cause__ or exc.__context__
            if not isinstance(cause, (OperationalError, ConnectionError, TimeoutError)):
                logger.exception("scheduled task %s not sent", entry.name)
                return
            metrics.redis_error("beat")
            if not self.broker_away:
                logger.warning("the broker is unavailable (%s); scheduled tasks are skipped until it answers", cause)
            self.broker_away = True
            return
        if self.broker_away:
            logger.warning("the broker answers again; scheduled tasks are sent")
            self.broker_away = False
