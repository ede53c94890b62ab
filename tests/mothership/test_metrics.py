"""/metrics in one process: counts summed in Redis, the exposition's values, who may scrape.

The whole deployment (several web processes, workers, beat, restarts) is tests/e2e/test_metrics.py.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from mothership.infra import metrics
from mothership.infra.database import retrying_database
from mothership.infra.redis import get_redis, retrying
from tests.support.turns import run_turn

pytestmark = pytest.mark.django_db

CONTRACT = [  # DESIGN.md, "Operations"
    "mothership_streams_live",
    "mothership_streams_total",
    "mothership_first_delta_seconds",
    "mothership_turn_queue_depth",
    "mothership_ws_connections",
    "mothership_warms_total",
    "mothership_spend_usd_total",
]


@pytest.fixture(autouse=True)
def own_metrics(settings, request):
    """Metrics of a deployment of their own (keyed by its turn queue), nothing left unflushed from before."""
    metrics.flush()
    settings.CELERY_TASK_DEFAULT_QUEUE = f"metrics-{uuid.uuid4().hex[:8]}"
    settings.MOTHERSHIP_METRICS_TOKEN = ""
    yield
    metrics._recorder.take()  # what a test left unflushed goes nowhere
    metrics._recorder.gauges.clear()
    if "private_redis" not in request.fixturenames:  # (a private Redis goes with its keys)
        get_redis().delete(metrics.totals_key(), metrics.processes_key(), metrics.process_key(metrics._recorder.process))


def scrape(client: Client | None = None, **headers) -> dict[str, float]:
    """GET /metrics, parsed by prometheus-client's own parser: ``{'name{label="v"}': value}``."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


def samples(text: str) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def test_every_contract_metric_is_exposed_at_zero_in_a_format_prometheus_parses():
    text = Client().get("/metrics").content.decode()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name in CONTRACT:
        assert (name.removesuffix("_total") in families) or (name in families), name
    assert families["mothership_first_delta_seconds"] == "histogram"
    assert families["mothership_streams"] == "counter"
    found = samples(text)
    for status in metrics.STATUSES:  # every series exists from the start: rate() works from the first turn
        assert found[f'mothership_streams_total{{status="{status}"}}'] == 0
    assert found["mothership_first_delta_seconds_count"] == 0
    assert found["mothership_ws_connections"] == 0


def test_counts_of_this_process_are_summed_in_redis_with_cumulative_buckets():
    metrics.inc(metrics.STREAMS, label="completed")
    metrics.inc(metrics.STREAMS, label="completed")
    metrics.inc(metrics.SPEND, 0.25, label="turn")
    for seconds in (0.03, 0.2, 0.2, 7.0, 100.0):
        metrics.observe(metrics.FIRST_DELTA, seconds)

    found = scrape()

    assert found['mothership_streams_total{status="completed"}'] == 2
    assert found['mothership_streams_total{status="cancelled"}'] == 0
    assert found['mothership_spend_usd_total{kind="turn"}'] == 0.25
    assert found['mothership_first_delta_seconds_bucket{le="0.05"}'] == 1
    assert found['mothership_first_delta_seconds_bucket{le="0.25"}'] == 3
    assert found['mothership_first_delta_seconds_bucket{le="10.0"}'] == 4
    assert found['mothership_first_delta_seconds_bucket{le="+Inf"}'] == 5
    assert found["mothership_first_delta_seconds_count"] == 5
    assert found["mothership_first_delta_seconds_sum"] == pytest.approx(107.43)
    # Flushed: a second scrape adds nothing (counted once).
    assert scrape()['mothership_streams_total{status="completed"}'] == 2


def test_a_label_value_outside_its_set_is_counted_as_other_never_as_a_new_series():
    metrics.inc(metrics.WARMS, label=str(uuid.uuid4()))
    metrics.inc(metrics.REDIS_ERRORS, label="chats")
    found = scrape()
    assert found['mothership_warms_total{outcome="other"}'] == 1
    assert found['mothership_redis_errors_total{component="other"}'] == 1
    outcomes = {name for name in found if name.startswith("mothership_warms_total")}
    assert outcomes == {f'mothership_warms_total{{outcome="{o}"}}' for o in (*metrics.WARM_OUTCOMES, "other")}


def test_a_process_gauge_is_summed_over_live_processes_and_a_dead_ones_share_disappears():
    metrics.gauge_add(metrics.WS_CONNECTIONS, 3)
    metrics.gauge_add(metrics.WS_CONNECTIONS, -1)
    client = get_redis()
    # Another process, alive (renewed in time), and one that stopped renewing long ago.
    alive, dead = "host:1:alive", "host:2:dead"
    client.hset(metrics.process_key(alive), mapping={"mothership_ws_connections": "5.0"})
    client.hset(metrics.process_key(dead), mapping={"mothership_ws_connections": "40.0"})
    now_ms = int(time.time() * 1000)
    client.zadd(metrics.processes_key(), {alive: now_ms + 10_000, dead: now_ms - 1})
    try:
        assert scrape()["mothership_ws_connections"] == 2 + 5
        assert client.zscore(metrics.processes_key(), dead) is None  # forgotten at the scrape
    finally:
        client.delete(metrics.process_key(alive), metrics.process_key(dead))


def test_a_flush_redis_refuses_keeps_its_counts_for_the_next_and_counts_the_error(private_redis):
    metrics.inc(metrics.STREAMS, label="failed")
    private_redis.stop()
    assert metrics.flush() is False
    private_redis.start()
    assert metrics.flush() is True
    totals = {k.decode(): float(v) for k, v in get_redis().hgetall(metrics.totals_key()).items()}
    assert totals[metrics._field("mothership_streams", "failed")] == 1
    assert totals[metrics._field("mothership_redis_errors", "metrics")] == 1


def test_scrape_answers_503_while_redis_is_away_never_zeros(private_redis):
    private_redis.stop()
    response = Client().get("/metrics")
    assert response.status_code == 503
    assert b"Redis is unavailable" in response.content


def test_off_nothing_is_counted_and_the_endpoint_is_not_there(settings):
    settings.MOTHERSHIP_METRICS = False
    metrics.inc(metrics.STREAMS, label="completed")
    metrics.observe(metrics.DELIVERY_LAG, 0.01)
    assert Client().get("/metrics").status_code == 404
    settings.MOTHERSHIP_METRICS = True
    found = scrape()
    assert found['mothership_streams_total{status="completed"}'] == 0
    assert found["mothership_delivery_lag_seconds_count"] == 0


# --- the hooks: real services, counted where they happen ---------------------------------------


def test_a_turn_run_is_counted_by_status_with_its_first_delta(chat, turns_not_enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # counted once the seal commits
        status, stream, _ = run_turn(chat, "hello")
    assert status == "completed"
    found = scrape()
    assert found['mothership_streams_total{status="completed"}'] == 1
    assert found["mothership_first_delta_seconds_count"] == 1
    expected = (stream.first_delta_at - stream.created_at).total_seconds()
    assert found["mothership_first_delta_seconds_sum"] == pytest.approx(expected, abs=0.05)
    assert found["mothership_streams_live"] == 0


def test_a_queued_turn_is_live_and_a_cancelled_one_is_counted_as_cancelled(
    chat, turns_not_enqueued, django_capture_on_commit_callbacks
):
    from streams.services import stream_cancel, stream_start

    turn = stream_start(chat=chat, content="hi")
    assert scrape()["mothership_streams_live"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        stream_cancel(chat=chat, stream_id=turn.stream.id)
    found = scrape()
    assert found['mothership_streams_total{status="cancelled"}'] == 1
    assert found["mothership_streams_live"] == 0


def test_the_turn_queue_depth_is_the_celery_queues_length(settings):
    from mothership.celery import app

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    with app.producer_or_acquire() as producer:
        for _ in range(3):
            producer.publish({"x": 1}, routing_key=queue, exchange="", declare=[])
    try:
        found = scrape()
        assert found["mothership_turn_queue_depth"] == 3
        assert found["mothership_background_queue_depth"] == 0
    finally:
        get_redis().delete(queue)


def test_the_sweeper_counts_what_it_finds(chat, turns_not_enqueued, django_capture_on_commit_callbacks):
    from streams import locks
    from streams.models import Stream
    from streams.services import stream_start, streams_sweep

    turn = stream_start(chat=chat, content="hi")
    Stream.objects.filter(pk=turn.stream.pk).update(status="streaming")
    locks.lock_release(chat_id=chat.id, stream_id=turn.stream.id)  # its worker died: the lock expired
    with django_capture_on_commit_callbacks(execute=True):
        assert streams_sweep()["interrupted"] == [str(turn.stream.id)]
    found = scrape()
    assert found['mothership_sweeper_finds_total{action="interrupted"}'] == 1
    assert found['mothership_streams_total{status="interrupted"}'] == 1


@pytest.mark.django_db(transaction=True)  # retrying_database closes a broken connection: outside a transaction only
def test_each_failed_attempt_at_redis_or_the_database_is_counted_by_component():
    from django.db import OperationalError

    failures = iter([redis.ConnectionError("down"), redis.ConnectionError("down")])

    def flaky_redis():
        error = next(failures, None)
        if error:
            raise error
        return "ok"

    flaky_redis.__module__ = "streams.services.finalize"  # as the seal's own call is
    assert retrying(flaky_redis, for_seconds=5, what="a test") == "ok"

    database_failures = iter([OperationalError("gone")])

    def flaky_database():
        error = next(database_failures, None)
        if error:
            raise error
        return "ok"

    flaky_database.__module__ = "warming.dispatch"
    assert retrying_database(flaky_database, for_seconds=5, what="a test") == "ok"
    found = scrape()
    assert found['mothership_redis_errors_total{component="streams"}'] == 2
    assert found['mothership_database_errors_total{component="warming"}'] == 1
    assert found['mothership_redis_errors_total{component="web"}'] == 0


# --- who may scrape ---------------------------------------------------------------------------


def test_without_a_token_only_loopback_clients_may_scrape():
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    refused = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    assert refused.status_code == 403 and b"loopback" in refused.content


def test_without_a_token_a_forwarded_request_is_not_loopback_even_from_a_trusted_proxy_on_this_host(settings):
    settings.MOTHERSHIP_TRUSTED_PROXIES = ("127.0.0.1",)
    through_proxy = Client(REMOTE_ADDR="127.0.0.1").get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert through_proxy.status_code == 403
    settings.MOTHERSHIP_TRUSTED_PROXIES = ()
    # Untrusted, the header counts for nothing as an address, but it still says a proxy sent it.
    claims_loopback = Client(REMOTE_ADDR="127.0.0.1").get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert claims_loopback.status_code == 403
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 403


def test_with_a_token_the_bearer_is_required_from_every_client(settings):
    settings.MOTHERSHIP_METRICS_TOKEN = "s3cret-metrics-token"
    missing = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Token s3cret-metrics-token").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-tokenX").status_code == 403
    remote = Client(REMOTE_ADDR="10.1.2.3")
    assert remote.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token").status_code == 200
    forwarded = remote.get("/metrics", HTTP_AUTHORIZATION="bearer s3cret-metrics-token", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert forwarded.status_code == 200


def test_only_get_is_answered():
    assert Client().post("/metrics").status_code == 405


@pytest.mark.django_db(transaction=True)  # the demo MCP server is a child process, as in tests/streams/test_tools.py
def test_tool_calls_are_timed_by_status(chat, settings, turns_not_enqueued, tmp_path):
    from streams import eventlog, events
    from tests.support.tools import demo_servers

    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0
    settings.MCP_SERVERS = demo_servers(tmp_path / "demo-tools.jsonl")
    chat.tools = ["demo.*"]
    chat.save(update_fields=["tools"])

    status, ok_turn, _ = run_turn(chat, '/tool demo.roll {"sides": 6, "count": 3}')
    assert status == "completed"
    assert run_turn(chat, '/tool demo.roll {"sides": 1}')[0] == "completed"  # the tool answers an error

    found = scrape()
    assert found['mothership_tool_call_duration_seconds_count{status="ok"}'] == 1
    assert found['mothership_tool_call_duration_seconds_count{status="error"}'] == 1
    assert found['mothership_tool_call_duration_seconds_count{status="cancelled"}'] == 0
    result = next(e for e in eventlog.read(ok_turn.id) if e["type"] == events.TOOL_RESULT)
    assert found['mothership_tool_call_duration_seconds_sum{status="ok"}'] == pytest.approx(
        result["durationMs"] / 1000, abs=0.002
    )


def test_an_api_request_or_a_page_that_met_an_outage_is_counted_as_the_webs():
    from django.db import OperationalError
    from django.test import RequestFactory

    from mothership.infra.api import DatabaseUnavailableMiddleware, exception_handler

    assert exception_handler(OperationalError("gone"), {}).status_code == 503
    assert exception_handler(redis.ConnectionError("down"), {}).status_code == 503
    page = DatabaseUnavailableMiddleware(lambda request: None).process_exception(RequestFactory().get("/"), OperationalError())
    assert page.status_code == 503
    found = scrape()
    assert found['mothership_database_errors_total{component="web"}'] == 2
    assert found['mothership_redis_errors_total{component="web"}'] == 1


def test_a_sweep_that_fails_on_redis_is_counted_as_the_sweepers(private_redis):
    from streams.tasks import sweep_streams

    private_redis.stop()
    with pytest.raises(redis.ConnectionError):
        sweep_streams()
    private_redis.start()
    assert metrics.flush() is True
    totals = {k.decode(): float(v) for k, v in get_redis().hgetall(metrics.totals_key()).items()}
    assert totals[metrics._field("mothership_redis_errors", "sweeper")] == 1
