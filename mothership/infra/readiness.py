"""``/readyz``: is this deployment able to take turns? The database, Redis, a live turn worker and a
live background worker, and beat's last tick, each ``"ok"`` or a short reason.

The database and Redis are asked at once, each from a thread of its own, and the answer waits for
neither past ``MOTHERSHIP_READY_TIMEOUT``: a frozen Redis or database is a reason ("unreachable: no
answer within 1.5 s"), never a hung probe. Reasons name an error's class and its first line, with
any credentials cut out, never a URL with its password.
"""

from __future__ import annotations

import re
import threading
import time

import redis
from django.conf import settings
from django.db import connections
from redis.backoff import NoBackoff
from redis.retry import Retry

from mothership.infra.heartbeats import Heartbeats, heartbeats_read
from mothership.infra.redis import client_options

OK = "ok"
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*@")  # user:password@ in a URL


def _reason(exc: BaseException) -> str:
    """What an error says, short and without secrets: its class and the first line of its message."""
    message = (str(exc).strip().splitlines() or [""])[0]
    message = _CREDENTIALS.sub("***@", message)
    for secret in (settings.DATABASES["default"].get("PASSWORD"), redis.connection.parse_url(settings.REDIS_URL).get("password")):
        if secret:
            message = message.replace(secret, "***")
    message = message[:160]
    return f"unreachable: {exc.__class__.__name__}" + (f": {message}" if message else "")


def _database() -> str:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return OK
    finally:
        connections.close_all()  # this thread's own connection


def _redis(*, turn_queue: str, background_queue: str, timeout: float) -> Heartbeats:
    # A client of its own: the shared one waits 5 s and tries twice; this one gives up at the timeout.
    options = {**client_options(), "socket_timeout": timeout, "socket_connect_timeout": timeout}
    options.update(retry=Retry(NoBackoff(), 0), retry_on_error=[], health_check_interval=0)
    client = redis.Redis.from_url(settings.REDIS_URL, **options)
    try:
        return heartbeats_read(client, turn_queue=turn_queue, background_queue=background_queue)
    finally:
        client.close()


def _within(calls: dict, timeout: float) -> dict:
    """Each call's value or its error, from threads of their own; those not done by ``timeout`` are left
    to finish alone (each bounded by its own client's timeout) and answer a ``TimeoutError``."""
    results: dict = {}

    def run(name, call):
        try:
            results[name] = call()
        except Exception as exc:  # a readiness check reports, it never raises
            results[name] = exc

    threads = [threading.Thread(target=run, args=item, name=f"readyz-{item[0]}", daemon=True) for item in calls.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = TimeoutError(f"no answer within {timeout:g} s")
    return {name: results.get(name, late) for name in calls}


def _age(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _workers(beats: Heartbeats) -> str:
    limit, missing = settings.MOTHERSHIP_READY_WORKER_SECONDS, []
    for kind, age in (("turn", beats.turn_worker), ("background", beats.background_worker)):
        if age is None:
            missing.append(f"no {kind} worker seen")
        elif age > limit:
            missing.append(f"no {kind} worker seen for {_age(age)}")
    return "; ".join(missing) or OK


def _beat(beats: Heartbeats) -> str:
    if beats.beat is None:
        return "no beat tick seen"
    if beats.beat > settings.MOTHERSHIP_READY_BEAT_SECONDS:
        return f"beat's last tick {_age(beats.beat)} ago"
    return OK


def readiness_check(*, turn_queue: str, background_queue: str) -> tuple[bool, dict[str, str]]:
    """(ready?, ``{"db", "redis", "workers", "beat"}`` each ``"ok"`` or a reason) for the deployment
    whose turns go to ``turn_queue`` and whose other tasks go to ``background_queue``."""
    timeout = settings.MOTHERSHIP_READY_TIMEOUT
    found = _within(
        {
            "db": _database,
            "redis": lambda: _redis(turn_queue=turn_queue, background_queue=background_queue, timeout=timeout),
        },
        # A little past the Redis client's own timeout, so its own error (refused, timed out) is the reason.
        timeout + 0.2,
    )
    checks = {"db": OK if found["db"] == OK else _reason(found["db"])}
    beats = found["redis"]
    if isinstance(beats, Heartbeats):
        checks.update(redis=OK, workers=_workers(beats), beat=_beat(beats))
    else:
        unknown = "unknown: Redis unreachable"
        checks.update(redis=_reason(beats), workers=unknown, beat=unknown)
    return all(value == OK for value in checks.values()), checks


__all__ = ["readiness_check"]
