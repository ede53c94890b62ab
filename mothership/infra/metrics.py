"""Metrics of the whole deployment, counted in each process and summed in Redis.

Every process (web, turn worker, background worker, beat; on any host) counts in memory, and a
thread of its own adds what it counted to one Redis hash about once a second
(``MOTHERSHIP_METRICS_FLUSH_SECONDS``), in one pipeline: an event costs a dict update, never a
round trip. The totals live in Redis, so a restarted process loses nothing it flushed (a process
killed with SIGKILL loses at most its last second; one stopped cleanly flushes as it exits), and any
web process answers ``/metrics`` for every process of every host. A gauge a process holds (its open
sockets) is written to a key of that process that expires unless renewed: a dead process's share
disappears within ``_PROCESS_TTL``. Gauges whose truth lives elsewhere (live turns, queue depth) are
read at scrape time from that source (``mothership.selectors.metrics_gauges``), never counted.

Low cardinality: labels take values from fixed sets (a status, an outcome, a component), never a
chat, user or stream id; a value outside its set is counted as ``other``.

``MOTHERSHIP_METRICS=0`` turns every call here into a no-op (the benchmark's A/B) and ``/metrics``
answers 404. Keys: ``mothership:metrics:<turn queue>:…`` (two deployments on one Redis have their
own queues, so their own metrics).
"""

from __future__ import annotations

import atexit
import bisect
import hmac
import ipaddress
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from mothership.infra import proxies
from mothership.infra import redis as redis_client  # (which counts its errors here: imported as a module)

logger = logging.getLogger(__name__)

KEY_PREFIX = "mothership:metrics:"
OTHER = "other"  # a label value outside its metric's set


@dataclass(frozen=True)
class Metric:
    name: str  # a counter's without ``_total`` (the exposition adds it)
    kind: str  # "counter" | "histogram" | "gauge" (a gauge held by each process, summed)
    help: str
    label: str | None = None  # at most one label, with a fixed set of values
    values: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def label_value(self, value) -> str:
        value = str(value)
        return value if value in self.values else OTHER


STATUSES = ("completed", "cancelled", "interrupted", "failed")
WARM_OUTCOMES = ("warmed", "failed", "skipped_streaming", "empty", "budget", "superseded")
COMPONENTS = ("web", "socket", "streams", "warming", "spend", "sweeper", "beat", "metrics")
TOOL_STATUSES = ("ok", "error", "cancelled", "denied", "interrupted")

STREAMS = Metric("mothership_streams", "counter", "Turns sealed, by final status.", "status", STATUSES)
WARMS = Metric("mothership_warms", "counter", "Warms of conversations' prompt caches, by outcome.", "outcome", WARM_OUTCOMES)
SPEND = Metric(
    "mothership_spend_usd", "counter", "US dollars charged to the ledger, by kind (turn or warm).", "kind", ("turn", "warm")
)
SWEEPER_FINDS = Metric(
    "mothership_sweeper_finds",
    "counter",
    "Turns the sweeper found without a live worker or lock: sealed interrupted, or queued again after a Redis restart.",
    "action",
    ("interrupted", "requeued"),
)
REDIS_ERRORS = Metric(
    "mothership_redis_errors", "counter", "Redis errors met (each failed attempt), by component.", "component", COMPONENTS
)
DATABASE_ERRORS = Metric(
    "mothership_database_errors", "counter", "Database errors met (each failed attempt), by component.", "component", COMPONENTS
)
FIRST_DELTA = Metric(
    "mothership_first_delta_seconds",
    "histogram",
    "Send (the turn created) to its first delta appended to the event log, at the worker.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
DELIVERY_LAG = Metric(
    "mothership_delivery_lag_seconds",
    "histogram",
    "A live stream event appended at the worker to sent on a socket by the web process.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
WARM_LATENESS = Metric(
    "mothership_warm_lateness_seconds",
    "histogram",
    "A scheduled warm's recorded time minus the time it was due.",
    buckets=(0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
TOOL_CALLS = Metric(
    "mothership_tool_call_duration_seconds",
    "histogram",
    "A turn's tool calls, from the call to its result, by status.",
    "status",
    TOOL_STATUSES,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
WS_CONNECTIONS = Metric("mothership_ws_connections", "gauge", "Open WebSockets, over every live web process.")

METRICS = (STREAMS, WARMS, SPEND, SWEEPER_FINDS, REDIS_ERRORS, DATABASE_ERRORS, FIRST_DELTA, DELIVERY_LAG, WARM_LATENESS)
METRICS += (TOOL_CALLS, WS_CONNECTIONS)
_BY_NAME = {m.name: m for m in METRICS}


# --- counting, in this process ---------------------------------------------------------------


class _Recorder:
    """This process's counts since its last flush, and the gauges it holds."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str], float] = {}  # (metric, label value) → amount
        self.histograms: dict[tuple[str, str], list[float]] = {}  # → [per-bucket counts…, +Inf count, sum]
        self.gauges: dict[str, float] = {}  # metric → this process's value
        self.flusher: threading.Thread | None = None
        self.process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.failing_since: float | None = None

    def started(self) -> None:
        if self.flusher is None:
            with self.lock:
                if self.flusher is None:
                    self.flusher = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
                    self.flusher.start()

    def _run(self) -> None:
        while True:
            time.sleep(settings.MOTHERSHIP_METRICS_FLUSH_SECONDS)
            try:
                flush()
            except Exception:  # never let the flusher die: the next one tries again
                logger.exception("metrics flush failed")

    def take(self):
        with self.lock:
            counts, self.counts = self.counts, {}
            histograms, self.histograms = self.histograms, {}
            return counts, histograms, dict(self.gauges)

    def give_back(self, counts: dict, histograms: dict) -> None:
        """A flush Redis did not take: its counts wait for the next one."""
        with self.lock:
            for key, amount in counts.items():
                self.counts[key] = self.counts.get(key, 0.0) + amount
            for key, cells in histograms.items():
                mine = self.histograms.setdefault(key, [0.0] * len(cells))
                for i, value in enumerate(cells):
                    mine[i] += value


_recorder = _Recorder()


def _after_fork() -> None:
    global _recorder
    _recorder = _Recorder()  # a forked child has no flusher thread: it starts its own


os.register_at_fork(after_in_child=_after_fork)


def inc(metric: Metric, amount: float = 1.0, label=None) -> None:
    """Add ``amount`` to a counter (``label``: its one label's value)."""
    if not settings.MOTHERSHIP_METRICS:
        return
    key = (metric.name, metric.label_value(label) if metric.label else "")
    recorder = _recorder
    with recorder.lock:
        recorder.counts[key] = recorder.counts.get(key, 0.0) + amount
    recorder.started()


def observe(metric: Metric, value: float, label=None) -> None:
    """One observation of a histogram."""
    if not settings.MOTHERSHIP_METRICS:
        return
    key = (metric.name, metric.label_value(label) if metric.label else "")
    index = bisect.bisect_left(metric.buckets, value)
    recorder = _recorder
    with recorder.lock:
        cells = recorder.histograms.get(key)
        if cells is None:
            cells = recorder.histograms[key] = [0.0] * (len(metric.buckets) + 2)
        cells[index] += 1
        cells[-1] += value
    recorder.started()


def gauge_add(metric: Metric, delta: float) -> None:
    """Change this process's share of a gauge (summed over the live processes at scrape time)."""
    if not settings.MOTHERSHIP_METRICS:
        return
    recorder = _recorder
    with recorder.lock:
        recorder.gauges[metric.name] = recorder.gauges.get(metric.name, 0.0) + delta
    recorder.started()


def redis_error(component: str) -> None:
    inc(REDIS_ERRORS, label=component)


def database_error(component: str) -> None:
    inc(DATABASE_ERRORS, label=component)


def failed_attempt(metric: Metric, call) -> None:
    """A failed attempt of ``retrying`` / ``retrying_database``, counted by the app whose code met it."""
    inc(metric, label=(getattr(call, "__module__", None) or "").partition(".")[0])


# --- flushing, to Redis ----------------------------------------------------------------------


def _prefix() -> str:
    return f"{KEY_PREFIX}{settings.CELERY_TASK_DEFAULT_QUEUE}:"


def totals_key() -> str:
    return _prefix() + "totals"


def processes_key() -> str:
    return _prefix() + "processes"


def process_key(process: str) -> str:
    return _prefix() + "process:" + process


def _process_ttl() -> float:
    """How long a process's gauges outlive its last flush: a few missed flushes, never a dead process's sockets for long."""
    return max(5.0, 5 * settings.MOTHERSHIP_METRICS_FLUSH_SECONDS)


def _field(name: str, label: str, cell: str = "") -> str:
    return json.dumps([name, label, cell], separators=(",", ":"))


def flush(*, quiet: bool = False) -> bool:
    """Add this process's counts since the last flush to the totals, and renew its gauges; one pipeline.
    False when Redis did not take them (they wait for the next flush; an error is counted)."""
    recorder = _recorder
    counts, histograms, gauges = recorder.take()
    if not (counts or histograms or gauges):
        return True
    # MULTI: all of a flush or none of it. (Only a reply lost after EXEC ran would count it twice.)
    pipe = redis_client.get_redis().pipeline(transaction=True)
    totals = totals_key()
    for (name, label), amount in counts.items():
        pipe.hincrbyfloat(totals, _field(name, label), amount)
    for (name, label), cells in histograms.items():
        for i, value in enumerate(cells[:-1]):
            if value:
                pipe.hincrbyfloat(totals, _field(name, label, str(i)), value)
        pipe.hincrbyfloat(totals, _field(name, label, "sum"), cells[-1])
    now_ms = int(time.time() * 1000)
    if gauges:
        key, ttl_ms = process_key(recorder.process), int(_process_ttl() * 1000)
        pipe.hset(key, mapping={name: repr(value) for name, value in gauges.items()})
        pipe.pexpire(key, ttl_ms)
        pipe.zadd(processes_key(), {recorder.process: now_ms + ttl_ms})
        pipe.zremrangebyscore(processes_key(), "-inf", now_ms)  # (restarted processes' entries, even if nobody scrapes)
    try:
        pipe.execute()
    except redis.RedisError as exc:
        recorder.give_back(counts, histograms)
        if recorder.failing_since is None and not quiet:
            recorder.failing_since = time.monotonic()
            logger.warning("metrics not flushed to redis (%s); kept in memory and tried again", exc)
        with recorder.lock:
            key = (REDIS_ERRORS.name, "metrics")
            recorder.counts[key] = recorder.counts.get(key, 0.0) + 1
        return False
    if recorder.failing_since is not None:
        logger.warning("metrics flushed to redis again after %.1f s", time.monotonic() - recorder.failing_since)
        recorder.failing_since = None
    return True


def _flush_at_exit() -> None:
    if _recorder.flusher is not None:
        try:
            flush(quiet=True)  # (logging may be shut down already)
        except Exception:  # an exit is never held up by metrics
            pass


atexit.register(_flush_at_exit)


# --- reading, at scrape time -----------------------------------------------------------------


@dataclass(frozen=True)
class Gauge:
    """A gauge read at scrape time from its source of truth."""

    name: str
    help: str
    value: float


def _read() -> tuple[dict, dict[str, float]]:
    """The totals (``(name, label, cell)`` → value) and the gauges summed over live processes."""
    client = redis_client.get_redis()
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(totals_key())
    pipe.zremrangebyscore(processes_key(), "-inf", now_ms)  # processes that stopped renewing
    pipe.zrange(processes_key(), 0, -1)
    raw, _, processes = pipe.execute()
    totals = {tuple(json.loads(k)): float(v) for k, v in raw.items()}
    gauges: dict[str, float] = {}
    if processes:
        pipe = client.pipeline(transaction=False)
        for process in processes:
            pipe.hgetall(process_key(process.decode()))
        for held in pipe.execute():
            for name, value in held.items():
                name = name.decode()
                if name in _BY_NAME:
                    gauges[name] = gauges.get(name, 0.0) + float(value)
    return totals, gauges


class _Collector:
    def __init__(self, totals: dict, gauges: dict[str, float], extra: Iterable[Gauge]):
        self.totals, self.gauges, self.extra = totals, gauges, list(extra)

    def collect(self):
        for metric in METRICS:
            if metric.kind == "counter":
                yield self._counter(metric)
            elif metric.kind == "histogram":
                yield self._histogram(metric)
            else:
                family = GaugeMetricFamily(metric.name, metric.help)
                family.add_metric([], self.gauges.get(metric.name, 0.0))
                yield family
        for gauge in self.extra:
            family = GaugeMetricFamily(gauge.name, gauge.help)
            family.add_metric([], gauge.value)
            yield family

    def _labels(self, metric: Metric) -> list[str]:
        """Every value of its label (each series exists from the start, at 0), then ``other`` if counted."""
        seen = {label for name, label, _ in self.totals if name == metric.name}
        return [*metric.values, *sorted(seen - set(metric.values))] if metric.label else [""]

    def _counter(self, metric: Metric):
        family = CounterMetricFamily(metric.name, metric.help, labels=[metric.label] if metric.label else None)
        for label in self._labels(metric):
            family.add_metric([label] if metric.label else [], self.totals.get((metric.name, label, ""), 0.0))
        return family

    def _histogram(self, metric: Metric):
        family = HistogramMetricFamily(metric.name, metric.help, labels=[metric.label] if metric.label else None)
        for label in self._labels(metric):
            running, buckets = 0.0, []
            for i, bound in enumerate([*metric.buckets, float("inf")]):
                running += self.totals.get((metric.name, label, str(i)), 0.0)
                buckets.append(("+Inf" if bound == float("inf") else _le(bound), running))
            family.add_metric(
                [label] if metric.label else [], buckets, sum_value=self.totals.get((metric.name, label, "sum"), 0.0)
            )
        return family


def _le(bound: float) -> str:
    return repr(float(bound))


def exposition(extra: Iterable[Gauge] = ()) -> bytes:
    """The Prometheus text exposition of every metric (this process's unflushed counts are flushed first)."""
    flush()
    totals, gauges = _read()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(totals, gauges, extra))
    return generate_latest(registry)


# --- who may scrape ----------------------------------------------------------------------------

# A request that came through a proxy says so in one of these: without a token it is refused,
# whatever address it claims (a proxy on this host would otherwise make every client loopback).
_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def scrape_refusal(request) -> tuple[int, str] | None:
    """Why this request may not read ``/metrics`` (its status and a sentence), or None.

    ``MOTHERSHIP_METRICS_TOKEN`` set: ``Authorization: Bearer <it>`` (401 without it, 403 when
    wrong; compared in constant time). Unset: loopback clients only (403 for any other, and for
    any request forwarded by a proxy).
    """
    token = settings.MOTHERSHIP_METRICS_TOKEN
    if token:
        scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return 401, "Send Authorization: Bearer <MOTHERSHIP_METRICS_TOKEN>."
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return 403, "Wrong metrics token."
        return None
    if any(request.META.get(header) for header in _FORWARDING_HEADERS):
        return 403, "Forwarded requests need MOTHERSHIP_METRICS_TOKEN; without it, only loopback clients may scrape."
    try:
        address = ipaddress.ip_address(proxies.client_address(request))
    except ValueError:
        address = None
    if address is not None and getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    if address is None or not address.is_loopback:
        return 403, "Only loopback clients may scrape while MOTHERSHIP_METRICS_TOKEN is unset."
    return None
