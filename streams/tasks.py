from __future__ import annotations

import redis
from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.db import InterfaceError, OperationalError

from mothership.infra import metrics
from mothership.infra.logs import log_context

_keepers: list = []


@shared_task(name="streams.run_stream", ignore_result=True, acks_late=False)
def run_stream(stream_id: str) -> str:
    from streams.services import stream_run

    with log_context(stream_id=stream_id):  # the turn's lines say which stream (and chat: stream_run)
        return stream_run(stream_id=stream_id)


@shared_task(name="streams.sweep", ignore_result=True)
def sweep_streams() -> dict:
    from streams.services import streams_sweep

    try:
        return streams_sweep()
    except redis.RedisError:  # the next sweep tries again; the count says how long it has failed
        metrics.redis_error("sweeper")
        raise
    except (OperationalError, InterfaceError):
        metrics.database_error("sweeper")
        raise


@worker_ready.connect
def _start_queue_keeper(sender, **kwargs) -> None:
    """A worker of the turn queue keeps that queue's waiting turns alive (streams.queue)."""
    from streams.queue import QueueKeeper

    turn_queue = sender.app.conf.task_default_queue
    if turn_queue in {queue.name for queue in sender.task_consumer.queues}:
        keeper = QueueKeeper(queue=turn_queue)
        keeper.start()
        _keepers.append(keeper)


@worker_ready.connect
def _register_turn_worker(sender, **kwargs) -> None:
    """A worker of the turn queue names itself in Redis (its node name and this boot), then seals at
    once the turns of the workers that no longer exist (its own earlier boot first), off its start path."""
    import threading

    turn_queue = sender.app.conf.task_default_queue
    if turn_queue not in {queue.name for queue in sender.task_consumer.queues}:
        return
    from streams.workers import worker_start

    worker_start(slot=sender.hostname)
    threading.Thread(target=_sweep_lost_workers, name="lost-workers-sweep", daemon=True).start()


def _sweep_lost_workers() -> None:
    import logging

    from django.db import close_old_connections

    from streams.services import streams_sweep_lost_workers

    try:
        streams_sweep_lost_workers()
    except Exception:  # the beat's sweeps judge them too
        logging.getLogger(__name__).exception("could not sweep the turns of lost workers")
    finally:
        close_old_connections()


@worker_ready.connect
def _warm_up_turns(sender, **kwargs) -> None:
    """What a turn's first run in this process would do once, done now, off the start path: a
    burst right after a start would otherwise do it in each of its turns' threads at once."""
    import threading

    turn_queue = sender.app.conf.task_default_queue
    if turn_queue in {queue.name for queue in sender.task_consumer.queues}:
        threading.Thread(target=_warm_up, name="turn-warm-up", daemon=True).start()


def _warm_up() -> None:
    import logging

    from channels.layers import get_channel_layer
    from django.template.loader import get_template

    from mothership.infra.prepared import prepare_all
    from mothership.infra.redis import get_redis
    from streams import eventlog
    from streams.providers import get_provider

    try:
        get_channel_layer()  # the layer's module (an event's publish names its group through it)
        get_provider()
        get_template("mothership/_tile.html")
        eventlog._append_script()
        pool = get_redis().connection_pool  # a few connections open before the turns ask for them
        opened = [pool.get_connection() for _ in range(_REDIS_CONNECTIONS_AHEAD)]
        for connection in opened:
            pool.release(connection)
        prepare_all()
    except Exception:  # a turn does it all again itself
        logging.getLogger(__name__).exception("the turn worker's warm-up failed")


_REDIS_CONNECTIONS_AHEAD = 8


@worker_ready.connect
def _list_tools(sender, **kwargs) -> None:
    """Each MCP server's tools listed once the worker is up (off its start path), for the pages' picker."""
    import threading

    from django.conf import settings

    turn_queue = sender.app.conf.task_default_queue
    if settings.MCP_SERVERS and turn_queue in {queue.name for queue in sender.task_consumer.queues}:
        from streams.tools import tool_catalog_refresh

        threading.Thread(target=tool_catalog_refresh, name="mcp-catalog", daemon=True).start()


@worker_shutdown.connect
def _stop_queue_keeper(**kwargs) -> None:
    while _keepers:
        _keepers.pop().stop()


@worker_shutdown.connect
def _stop_worker_beat(**kwargs) -> None:
    from streams.workers import worker_stop

    worker_stop()
