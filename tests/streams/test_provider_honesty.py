"""Honest failures and honest usage, against local servers that speak each provider's wire format
with the quirks of real third-party servers (``quirks=…``):

- a streaming request answered with one JSON body is reported as such, with its message, and not
  retried as a dropped connection; ``provider_check`` streams a reply, so it fails such a server;
- a 4xx, and an ``error`` inside a 200 stream, keep the server's own message (trimmed, keys masked);
- quota and spend-limit refusals are not retried; each retry is logged, without the key;
- a turn stopped before the provider reported its usage records an estimate (``usage_estimated``),
  never 0 tokens for billed work, a Continue's kept text included; a request refused before any
  output (or that never reached the provider) is charged nothing;
- what real servers do differently (a usage chunk with a choice, no ``finish_reason`` key, the role
  with the first text or none, no cached-token details; ``message_start`` usage all zeros, no
  ``ping``) changes nothing for a reply that completes.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.core.management import call_command

from chats.models import Message
from mothership.infra.llm_models import parse_llm_models
from spend.models import Charge
from streams import eventlog
from streams.models import Stream
from streams.providers.base import provider_message, with_estimate
from streams.services import stream_answer_again, stream_cancel, stream_run, stream_start
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


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        ("400 model", "the provider answered 400"),  # as some proxies answer it
        ("404 model", "not found (check LLM_MODEL and OPENAI_BASE_URL)"),  # as OpenAI itself answers it
    ],
    ids=["400", "404"],
)
def test_the_openai_provider_keeps_the_servers_message_for_a_4xx(settings, chat, turns_not_enqueued, prompt, reason):
    server = _openai(settings)
    try:
        status, stream, _ = run_turn(chat, prompt)
    finally:
        server.stop()
    assert status == "failed" and len(server.requests) == 1
    assert stream.reason == f"{reason}: The model `gpt-fake` does not exist or you do not have access to it."


def test_an_error_inside_a_200_stream_keeps_the_servers_message_and_the_text(settings, chat, turns_not_enqueued):
    """LiteLLM and vLLM report a failure after the stream began as ``data: {"error": {…}}``. Before,
    the reason read "provider error: APIError mid-stream", without the server's words."""
    server = _openai(settings, quirks={"echo_key"})
    settings.OPENAI_API_KEY = "sk-proj-abcdefghijklmnop"
    try:
        status, stream, message = run_turn(chat, "error mid-stream")
    finally:
        server.stop()
    assert status == "failed" and message.content == "".join(fake_openai.WORDS[:3])
    assert stream.reason == (
        "the provider reported an error mid-stream: litellm.APIConnectionError: OpenAIException - Connection error. "
        "Received Model Group=gpt-fake Received API Key = sk-proj…"
    )
    assert len(server.requests) == 1  # no retry after the first delta


def test_an_error_opening_a_200_stream_is_retried_as_its_code_says(settings, chat, turns_not_enqueued):
    server = _openai(settings)
    try:
        status, stream, message = run_turn(chat, "error first once, then hello")  # code "429": a wait may help
    finally:
        server.stop()
    assert status == "completed", stream.reason
    assert message.content == "".join(fake_openai.WORDS) and len(server.requests) == 2


def test_each_retry_is_logged_with_its_reason_attempt_and_delay_and_no_key(settings, chat, turns_not_enqueued, caplog):
    """Before, a retry left no trace: a slow first token had no explanation in the worker's log."""
    server = _openai(settings, quirks={"echo_key"})
    settings.OPENAI_API_KEY = "sk-proj-abcdefghijklmnop"
    try:
        with caplog.at_level(logging.WARNING, logger="streams.providers.base"):
            status, stream, _ = run_turn(chat, "429 once, then hello")  # no Retry-After: our own back-off
    finally:
        server.stop()
    assert status == "completed", stream.reason
    retries = [r for r in caplog.records if r.name == "streams.providers.base"]
    assert [r.levelno for r in retries] == [logging.WARNING]
    assert retries[0].getMessage() == (
        "gpt-fake: retry 1 of 2 in 0.5 s after: rate limited by the provider: Rate limit reached for gpt-fake in "
        "organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. "
        "Received API Key = sk-proj…"
    )
    assert "abcdefghijklmnop" not in caplog.text


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_provider_check_fails_a_server_that_answers_a_streaming_request_with_json(settings, capsys, kind):
    """Every turn on such a server fails; before, provider_check (one non-streaming token) said "ok"."""
    server = (_openai if kind == "openai" else _anthropic)(settings, quirks={"ignores_stream"})
    try:
        with pytest.raises(SystemExit) as exit_status:
            call_command("provider_check")
        out = capsys.readouterr().out
    finally:
        server.stop()
    assert exit_status.value.code == 1
    assert (
        "FAILED: a streaming request: the provider answered without streaming (does the server support stream: true?)" in out
    ), out
    assert [r["body"].get("stream") for r in server.requests] == [None, True]  # the warm's request, then a turn's


def test_provider_check_asks_for_one_token_then_streams_a_reply(provider, capsys):
    call_command("provider_check")
    assert ": ok, usage" in capsys.readouterr().out
    assert [r["body"].get("stream") for r in provider.requests] == [None, True]


def test_a_request_refused_before_any_output_is_charged_nothing(provider, chat):
    """A provider bills no prompt it refused. Before, the turn was charged an estimated prompt
    (``usage_estimated``) for a request that produced nothing."""
    status, stream, message = run_turn(chat, "quota" if provider.kind == "openai" else "spend limit")
    assert status == "failed" and message.content == ""
    assert message.usage == dict.fromkeys(message.usage, 0) and message.usage_estimated is False
    charge = Charge.objects.get(pk=stream.pk)
    assert (charge.cost_nanousd, charge.estimated, charge.input_tokens, charge.output_tokens) == (0, False, 0, 0)


def test_a_provider_never_reached_charges_nothing(settings, chat, turns_not_enqueued):
    server = _openai(settings)
    server.stop()  # nothing listens on its port any more
    settings.LLM_MAX_RETRIES = 0
    status, stream, message = run_turn(chat, "hello")
    assert status == "failed" and stream.reason == "could not reach the provider"
    assert message.usage == dict.fromkeys(message.usage, 0) and message.usage_estimated is False


def test_a_stream_cut_after_output_is_still_charged_its_estimate(settings, chat, turns_not_enqueued):
    server = _openai(settings)
    try:
        status, stream, message = run_turn(chat, "drop")  # three chunks, then the connection is cut
    finally:
        server.stop()
    assert status == "failed" and message.content == "".join(fake_openai.WORDS[:3])
    assert message.usage_estimated is True
    assert (message.input_tokens, message.output_tokens) == (
        1 + 4,
        -(-len(message.content) // 4),
    )  # "drop": 1 token, +4 a message
    assert Charge.objects.get(pk=stream.pk).cost_nanousd > 0


def _stopped_turn(chat, start=None):
    """A slow reply (``start``: a Continue, say) stopped after a few deltas, through the real run loop and cancel."""
    turn = start() if start else stream_start(chat=chat, content="slow please")
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
def test_a_stopped_continue_estimates_its_input_with_the_kept_text(settings, chat, turns_not_enqueued):
    """A Continue sends the kept text as the start of the reply (a trailing assistant message):
    the model reads it, and is billed for it. Before, the estimate left it out."""
    server = _openai(settings)
    entry = {"id": "vllm", "provider": "openai", "model": "gpt-fake", "base_url": server.url, "prefill": True}
    settings.LLM_MODELS = parse_llm_models(json.dumps([entry]), {"OPENAI_API_KEY": "sk-test"}, max_tokens=100)
    try:
        _stream, first, _ = _stopped_turn(chat)
        kept = first.content
        again = _stopped_turn(chat, lambda: stream_answer_again(chat=chat, message_id=first.pk, continues=True))
    finally:
        server.stop()
    continued, message, _ = again
    assert continued.status == "cancelled" and message.content.startswith(kept) and len(message.content) > len(kept)
    charge = Charge.objects.get(pk=continued.pk)
    question = 3 + 4  # "slow please": 11 characters (3 tokens), one message (4)
    assert charge.estimated and charge.input_tokens == question + -(-len(kept) // 4) + 4
    assert server.requests[-1]["body"]["messages"][-1] == {"role": "assistant", "content": kept}


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
        set(),
        {"usage_chunk_choice"},
        {"no_finish_key"},
        {"role_with_text"},
        {"no_role_chunk"},
        {"no_cached_details"},
        {"usage_chunk_choice", "no_finish_key", "role_with_text", "no_cached_details"},
    ],
    ids=lambda q: "+".join(sorted(q)) or "as-openai-sends-it",
)
def test_openai_compatible_servers_quirks_change_nothing_for_a_reply(settings, chat, turns_not_enqueued, quirks):
    server = _openai(settings, quirks)
    try:
        status, stream, message = run_turn(chat, "429 once, then hello")  # a 429 without Retry-After first
    finally:
        server.stop()
    assert status == "completed", stream.reason
    assert message.content == "".join(fake_openai.WORDS) and message.output_tokens == len(fake_openai.WORDS)
    cached = 0 if "no_cached_details" in quirks else 24
    assert (message.input_tokens, message.cache_read_tokens, message.usage_estimated) == (30 - cached, cached, False)
    assert len(server.requests) == 2


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
