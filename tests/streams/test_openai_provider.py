"""The openai provider against a local server speaking OpenAI's streaming wire format."""

from __future__ import annotations

import pytest

from streams.providers import ProviderError, TextDelta, Usage, get_provider
from tests.support.fake_openai import WORDS, FakeOpenAI
from tests.support.turns import django_start, stop_mid_stream
from tests.support.turns import run_turn as _turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake(settings, turns_not_enqueued):
    server = FakeOpenAI()
    settings.LLM_PROVIDER, settings.LLM_MODEL = "openai", "gpt-fake"
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "sk-test", server.url
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT, settings.MOTHERSHIP_DELTA_FLUSH_MS = 2, 5, 0
    yield server
    server.stop()


def test_a_reply_streams_with_usage_and_cached_tokens(fake, chat):
    status, stream, message = _turn(chat, "hello")
    assert status == "completed" and (stream.provider, stream.model) == ("openai", "gpt-fake")
    assert message.content == "".join(WORDS)
    assert (message.input_tokens, message.cache_read_tokens, message.output_tokens) == (6, 24, len(WORDS))
    request = fake.requests[-1]
    assert request["auth"] == "Bearer sk-test" and request["body"]["stream"] is True
    assert request["body"]["stream_options"] == {"include_usage": True}
    assert request["body"]["messages"][-1] == {"role": "user", "content": "hello"}


def test_a_429_before_the_first_delta_is_retried_after_retry_after(fake, chat):
    status, _, message = _turn(chat, "429 once with retry-after")
    assert status == "completed" and message.content == "".join(WORDS)
    assert len(fake.requests) == 2


@pytest.mark.parametrize("status", ["408", "409", "500", "503"])
def test_what_the_sdk_itself_retries_is_retried_before_the_first_delta(fake, chat, status):
    """408 (a time-out), 409 (a lock time-out), 5xx, as the openai SDK's own policy has it. Before,
    a 408 or 409 failed the turn at once although time-outs are documented as retried."""
    status_, stream, message = _turn(chat, f"{status} once please")
    assert status_ == "completed", stream.reason
    assert message.content == "".join(WORDS) and len(fake.requests) == 2


def test_a_408_that_persists_fails_with_the_servers_message(fake, chat, settings):
    settings.LLM_MAX_RETRIES = 0
    status, stream, _ = _turn(chat, "408 once please")
    assert status == "failed"
    assert stream.reason == "the provider answered 408: litellm.Timeout: Request timed out. Received Model Group=gpt-fake"


def test_bad_credentials_fail_the_stream_with_a_readable_reason_and_no_retry(fake, chat):
    status, stream, message = _turn(chat, "401 me")
    assert status == "failed" and "authentication failed" in stream.reason
    assert message.status == "failed" and len(fake.requests) == 1


def test_a_connection_drop_mid_stream_fails_it_and_keeps_the_text(fake, chat):
    status, stream, message = _turn(chat, "drop")
    assert status == "failed" and "dropped mid-stream" in stream.reason
    assert (message.status, message.content) == ("failed", "".join(WORDS[:3]))
    assert len(fake.requests) == 1  # no retry after the first delta


def test_a_stop_hangs_up_a_read_blocked_on_a_silent_server(fake, settings):
    settings.LLM_TIMEOUT = 30
    received, seconds, returned = stop_mid_stream(get_provider(), "stall")
    assert returned and seconds < 0.5
    assert [i.text for i in received if isinstance(i, TextDelta)] == WORDS[:3]
    assert fake.hung_up.wait(2)  # the server saw the client hang up while it was silent


def test_a_time_out_between_chunks_is_reported_as_one(fake, chat, settings):
    settings.LLM_TIMEOUT = 1
    status, stream, message = _turn(chat, "stall")
    assert status == "failed" and stream.reason == "the provider timed out mid-stream"
    assert message.content == "".join(WORDS[:3])


def test_the_warm_call_asks_for_one_token_and_reads_cached_tokens(fake):
    usage = get_provider().warm(messages=[{"role": "user", "content": "prefix"}])
    assert (usage.cache_read_tokens, usage.input_tokens, usage.output_tokens) == (12, 8, 1)
    assert fake.requests[-1]["body"]["max_tokens"] == 1 and not fake.requests[-1]["body"].get("stream")


def test_a_warm_error_is_a_provider_error(fake):
    with pytest.raises(ProviderError):
        get_provider().warm(messages=[{"role": "user", "content": "401"}])


def test_a_batch_of_warms_is_one_request_per_prefix_and_a_failing_one_fails_alone(fake):
    good, refused = [{"role": "user", "content": "prefix"}], [{"role": "user", "content": "401"}]

    results = get_provider().warm_many(prefixes=[good, refused, good])

    assert [type(r) for r in results] == [Usage, ProviderError, Usage]
    assert results[0] == results[2] == Usage(input_tokens=8, cache_read_tokens=12, output_tokens=1)
    assert "authentication failed" in results[1].reason
    assert [r["body"]["messages"] for r in fake.requests] == [good, refused, good]


def test_a_missing_key_fails_at_start_with_a_clear_error():
    result = django_start(LLM_PROVIDER="openai", LLM_MODEL="gpt-x", OPENAI_API_KEY="")
    assert result.returncode != 0 and "OPENAI_API_KEY must be set" in result.stderr
