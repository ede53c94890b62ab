"""The Celery app. All beat schedules are declared here, in one place."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mothership.settings")

app = Celery("mothership")
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
    }


@app.on_after_configure.connect
def _install_beat_schedule(sender, **kwargs):
    sender.conf.beat_schedule = beat_schedule()
