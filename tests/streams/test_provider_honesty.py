"""Honest failures and honest usage, against local servers that speak each provider's wire format
with the quirks of real third-party servers (``quirks=…``):

- a streaming request answered with one JSON body is reported as such, with its message, and not
  retried as a dropped connection;
- a 4xx keeps the server's own message (trimmed, keys masked);
- quota and spend-limit refusals are not retried;
- a turn stopped before the provider reported its usage records an estimate (``usage_estimated``),
  never 0 tokens for billed work;
- what real servers do differently (a usage chunk with a choice, no ``finish_reason`` key, no role
  chunk, no cached-token details, 429s without Retry-After; ``message_start`` usage all zeros, no
  ``ping``) changes nothing for a reply that completes.
"""

from __future__ import annotations

import time

import pytest

from chats.models import Message
from streams import eventlog
from streams.models import Stream
from streams.providers.base import provider_message, with_estimate
from streams.services import stream_cancel, stream_run, stream_start
from tests.support import fake_anthropic, fake_openai
from tests.support.threads import app_thread
from tests.support.turns import run_turn

pytestmark = pytest.mark.django_db


def _openai(settings, quirks=()):
    server = fake_openai.FakeOpenAI(quirks=quirks)
    settings.LLM_PROVIDER, settings.LLM_MODEL = "openai", "gpt-fake"
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "sk-test", server.url
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT, settings.MOTHERSHIP_DELTA_FLUSH_MS = 2, 5, 0
    return server


def _anthropic(settings, quirks=()):
    server = fake_anthropic.FakeAnthropic(quirks=quirks)
    settings.LLM_PROVIDER, settings.LLM_MODEL = "anthropic", "claude-fake"
    settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL = fake_anthropic.API_KEY, server.url
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT, settings.MOTHERSHIP_DELTA_FLUSH_MS = 2, 5, 0
    return server


@pytest.fixture(params=["openai", "anthropic"])
def provider(request, settings, turns_not_enqueued):
    server = (_openai if request.param == "openai" else _anthropic)(settings)
    server.kind = request.param
    yield server
    server.stop()


def test_a_json_body_on_a_streaming_request_is_reported_as_such_and_not_retried(provider, chat):
    status, stream, message = run_turn(chat, "json body please")
    assert status == "failed", stream.reason
    assert stream.reason.startswith("the provider answered without streaming"), stream.reason
    assert len(provider.requests) == 1  # before: retried three times as "the connection … dropped"
    assert message.status == "failed"


def test_a_spend_limit_is_not_retried_and_says_so(provider, chat):
    status, stream, _message = run_turn(chat, "quota" if provider.kind == "openai" else "spend limit")
    assert status == "failed" and stream.reason.startswith("the provider refused: quota or spend limit reached: "), stream.reason
    assert len(provider.requests) == 1


def test_the_openai_provider_keeps_the_servers_message_for_a_4xx(settings, chat, turns_not_enqueued):
    server = _openai(settings)
    try:
        status, stream, _ = run_turn(chat, "400 model")
    finally:
        server.stop()
    assert status == "failed"
    assert stream.reason == "the provider answered 400: The model `gpt-fake` does not exist or you do not have access to it."


def _stopped_turn(chat):
    """A slow reply stopped after a few deltas, through the real run loop and cancel."""
    turn = stream_start(chat=chat, content="slow please")
    worker = app_thread(lambda: stream_run(stream_id=turn.stream.id))
    worker.start()
    deadline = time.monotonic() + 10
    while sum(e["type"] == "stream.delta" for e in eventlog.read(turn.stream.id)) < 3:
        assert time.monotonic() < deadline, "no deltas"
        time.sleep(0.05)
    assert stream_cancel(chat=chat, stream_id=turn.stream.id, reason="user").cancelled
    worker.join(10)
    return Stream.objects.get(pk=turn.stream.id), Message.objects.get(pk=turn.assistant_message.pk), turn.stream.id


@pytest.mark.django_db(transaction=True)  # the run loop in a thread of its own
def test_a_stopped_turn_records_estimated_usage_instead_of_nothing(settings, chat, turns_not_enqueued):
    """OpenAI-format servers report usage in the last chunk only: a stop gets none. Before, the
    turn recorded 0 tokens (and 0 cost) for what it was billed."""
    server = _openai(settings)
    try:
        stream, message, stream_id = _stopped_turn(chat)
    finally:
        server.stop()
    assert stream.status == "cancelled" and message.content
    assert message.usage_estimated is True
    assert message.input_tokens == 3 + 4  # "slow please": 11 characters (3 tokens), one message (4)
    assert message.output_tokens == -(-len(message.content) // 4)
    usage_events = [e for e in eventlog.read(stream_id) if e["type"] == "stream.usage"]
    assert usage_events and usage_events[-1]["estimated"] is True
    assert usage_events[-1]["usage"]["output_tokens"] == message.output_tokens


@pytest.mark.django_db(transaction=True)
def test_a_stop_on_a_server_that_reports_input_only_at_the_end_estimates_it(settings, chat, turns_not_enqueued):
    server = _anthropic(settings, quirks={"zero_start_usage"})
    try:
        stream, message, _ = _stopped_turn(chat)
    finally:
        server.stop()
    assert stream.status == "cancelled" and message.usage_estimated is True
    assert message.input_tokens > 0 and message.output_tokens > 1  # message_start said 0 in and 1 out


def test_a_completed_turns_reported_figures_are_never_replaced(provider, chat):
    _status, _stream, message = run_turn(chat, "hello")
    assert message.usage_estimated is False and message.output_tokens == len(fake_openai.WORDS)


@pytest.mark.parametrize(
    "quirks",
    [
        {"usage_chunk_choice"},
        {"no_finish_key"},
        {"no_role_chunk"},
        {"no_cached_details"},
        {"usage_chunk_choice", "no_finish_key", "no_role_chunk", "no_cached_details", "no_retry_after"},
    ],
    ids=lambda q: "+".join(sorted(q)),
)
def test_openai_compatible_servers_quirks_change_nothing_for_a_reply(settings, chat, turns_not_enqueued, quirks):
    server = _openai(settings, quirks)
    try:
        status, stream, message = run_turn(chat, "429 once, then hello" if "no_retry_after" in quirks else "hello")
    finally:
        server.stop()
    assert status == "completed", stream.reason
    assert message.content == "".join(fake_openai.WORDS) and message.output_tokens == len(fake_openai.WORDS)
    cached = 0 if "no_cached_details" in quirks else 24
    assert (message.input_tokens, message.cache_read_tokens, message.usage_estimated) == (30 - cached, cached, False)


def test_anthropic_format_servers_quirks_change_nothing_for_a_reply(settings, chat, turns_not_enqueued):
    server = _anthropic(settings, quirks={"zero_start_usage", "no_ping"})
    try:
        status, stream, message = run_turn(chat, "hello")
    finally:
        server.stop()
    assert status == "completed", stream.reason
    assert message.content == "".join(fake_anthropic.WORDS)
    prompt = message.input_tokens + message.cache_read_tokens + message.cache_write_tokens
    assert prompt > 0 and message.output_tokens == len(fake_anthropic.WORDS) and not message.usage_estimated


def test_a_providers_message_is_one_trimmed_line_with_keys_masked():
    raw = "Incorrect API key provided: sk-proj-abcdefghijklmnop.\n  See   https://platform.openai.com " + "x" * 400
    line = provider_message(raw)
    assert "abcdefghijklmnop" not in line and "sk-proj…" in line and "\n" not in line
    assert len(line) == 300 and line.endswith("…")
    assert provider_message("Authorization: Bearer abc.def.ghi failed") == "Authorization: Bearer … failed"


def test_an_estimate_fills_only_what_is_missing():
    from streams.providers import Usage

    prompt = [{"role": "user", "content": "x" * 40}]
    assert with_estimate(Usage(input_tokens=7, output_tokens=3), prompt=prompt, text="y" * 8, finished=True) == Usage(7, 0, 0, 3)
    stopped = with_estimate(Usage(input_tokens=7, output_tokens=1), prompt=prompt, text="y" * 80, finished=False)
    assert (stopped.input_tokens, stopped.output_tokens, stopped.estimated) == (7, 20, True)
    nothing = with_estimate(Usage(), prompt=prompt, text="", finished=False)
    assert (nothing.input_tokens, nothing.output_tokens, nothing.estimated) == (14, 0, True)
    assert with_estimate(Usage(), prompt=None, text="", finished=False) == Usage()
