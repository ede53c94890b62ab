"""The anthropic provider against a local server speaking Anthropic's Messages wire format."""

from __future__ import annotations

import pytest

from chats.models import Message
from chats.selectors import conversation_prefix
from streams.providers import ProviderError, TextDelta, Usage, get_provider
from streams.providers.anthropic_messages import MAX_BREAKPOINTS, with_breakpoints
from tests.support.fake_anthropic import API_KEY, ERROR_MESSAGES, WORDS, FakeAnthropic
from tests.support.turns import django_start, stop_mid_stream
from tests.support.turns import run_turn as _turn

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "".join(WORDS)


@pytest.fixture
def fake(settings, turns_not_enqueued):
    server = FakeAnthropic()
    settings.LLM_PROVIDER, settings.LLM_MODEL = "anthropic", "claude-fake"
    settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL = API_KEY, server.url
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT, settings.LLM_MAX_TOKENS = 2, 1, 321
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0
    yield server
    server.stop()


def _marked(request_body) -> list[tuple[int, str]]:
    """(message index, text) of every block that carries cache_control."""
    return [
        (i, block["text"])
        for i, message in enumerate(request_body["messages"])
        for block in message["content"]
        if "cache_control" in block
    ]


def test_a_reply_streams_with_usage_mapped_from_message_start_and_delta(fake, chat):
    status, stream, message = _turn(chat, "hello there")
    assert status == "completed" and (stream.provider, stream.model) == ("anthropic", "claude-fake")
    assert (message.status, message.content) == ("complete", REPLY)
    # First turn: nothing cached yet, the whole prompt (2 words) is written for the next turn.
    assert (message.input_tokens, message.cache_read_tokens, message.cache_write_tokens, message.output_tokens) == (
        0,
        0,
        2,
        len(WORDS),
    )
    request = fake.requests[-1]
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}" and request["headers"]["anthropic-version"]
    body = request["body"]
    assert body["stream"] is True and body["model"] == "claude-fake" and body["max_tokens"] == 321
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello there", "cache_control": {"type": "ephemeral"}}]}
    ]


def test_the_next_turn_reads_what_the_previous_turn_cached(fake, chat):
    _turn(chat, "first question")
    status, _, message = _turn(chat, "second one")
    assert status == "completed"
    assert _marked(fake.requests[-1]["body"]) == [(0, "first question"), (1, REPLY), (2, "second one")]
    reply_tokens = len(REPLY.split())
    assert message.cache_read_tokens == 2  # the first turn's prompt
    assert message.cache_write_tokens == reply_tokens + 2  # its reply and this question
    assert message.input_tokens == 0


def test_a_blank_earlier_reply_is_left_out_rather_than_refused(fake, chat):
    _turn(chat, "first question")
    Message.objects.filter(chat=chat, role="assistant").update(content="  \n")  # e.g. stopped after a blank delta
    status, _, message = _turn(chat, "second one")
    assert status == "completed" and message.content == REPLY
    assert [m["role"] for m in fake.requests[-1]["body"]["messages"]] == ["user", "user"]


def test_a_long_conversation_never_marks_more_than_the_limit(fake, chat):
    for i in range(4):
        assert _turn(chat, f"question {i}")[0] == "completed"
    for request in fake.requests:
        assert 1 <= len(_marked(request["body"])) <= MAX_BREAKPOINTS
    assert len(with_breakpoints([{"role": "user", "content": str(i)} for i in range(9)], last=9)) == 9
    assert (
        len(_marked({"messages": with_breakpoints([{"role": "user", "content": str(i)} for i in range(9)], last=9)}))
        == MAX_BREAKPOINTS
    )


def test_the_warm_call_refreshes_the_prefix_and_the_next_turn_reads_it(fake, chat):
    _turn(chat, "first question")
    provider = get_provider()
    first = provider.warm(messages=conversation_prefix(chat_id=chat.id))
    body = fake.requests[-1]["body"]
    assert body["max_tokens"] == 1 and not body.get("stream")
    assert _marked(body) == [(0, "first question"), (1, REPLY)]
    assert body["messages"][-1] == {"role": "user", "content": [{"type": "text", "text": "."}]}  # uncached, discarded
    reply_tokens = len(REPLY.split())
    assert (first.cache_read_tokens, first.cache_write_tokens, first.input_tokens, first.output_tokens) == (2, reply_tokens, 1, 1)
    again = provider.warm(messages=conversation_prefix(chat_id=chat.id))
    assert (again.cache_read_tokens, again.cache_write_tokens) == (2 + reply_tokens, 0)
    _, _, message = _turn(chat, "next")
    assert message.cache_read_tokens == 2 + reply_tokens  # the warm kept the whole prefix


@pytest.mark.parametrize("prompt", ["429 once please", "529 once please", "500 once please"])
def test_a_rate_limit_or_overload_before_the_first_delta_is_retried(fake, chat, prompt):
    status, _, message = _turn(chat, prompt)
    assert status == "completed" and message.content == REPLY
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("prompt", "reason", "kind"),
    [
        ("429 once please", "rate limited by the provider", "rate_limit_error"),
        ("529 once please", "the provider is overloaded", "overloaded_error"),
        ("500 once please", "the provider had an internal error", "api_error"),
    ],
    ids=["429", "529", "500"],
)
def test_a_retryable_error_that_persists_fails_with_the_servers_message(fake, chat, settings, prompt, reason, kind):
    """Before, only errors that are not retried showed the server's words; these read bare."""
    settings.LLM_MAX_RETRIES = 0
    status, stream, message = _turn(chat, prompt)
    assert status == "failed" and stream.reason == f"{reason}: {ERROR_MESSAGES[kind]}"
    assert (message.status, message.content) == ("failed", "")


def test_bad_credentials_fail_at_once_with_a_readable_reason(fake, chat, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-wrong"
    status, stream, message = _turn(chat, "hello")
    assert status == "failed" and stream.reason == "authentication failed (check ANTHROPIC_API_KEY): invalid x-api-key"
    assert message.status == "failed" and len(fake.requests) == 1


def test_an_overloaded_error_event_mid_stream_fails_it_and_keeps_the_text(fake, chat):
    status, stream, message = _turn(chat, "overloaded")
    assert status == "failed" and stream.reason == "the provider is overloaded mid-stream: Overloaded"
    assert (message.status, message.content) == ("failed", "".join(WORDS[:3]))
    assert len(fake.requests) == 1  # no retry after the first delta


def test_a_connection_drop_mid_stream_fails_it_and_keeps_the_text(fake, chat):
    status, stream, message = _turn(chat, "drop")
    assert status == "failed" and stream.reason == "the connection to the provider dropped mid-stream"
    assert (message.status, message.content) == ("failed", "".join(WORDS[:3]))
    assert len(fake.requests) == 1


def test_a_time_out_before_the_first_byte_fails_readably(fake, chat, settings):
    settings.LLM_MAX_RETRIES = 0
    status, stream, _ = _turn(chat, "stall before the headers")
    assert status == "failed" and stream.reason == "the provider timed out"


def test_a_time_out_between_events_fails_readably_and_keeps_the_text_and_usage(fake, chat):
    status, stream, message = _turn(chat, "stall mid-stream")  # LLM_TIMEOUT is 1 s here
    assert status == "failed" and stream.reason == "the provider timed out mid-stream"
    assert (message.content, message.cache_write_tokens) == ("".join(WORDS[:3]), 2)  # message_start's usage is kept
    assert len(fake.requests) == 1


def test_a_retry_after_longer_than_a_person_waits_fails_at_once(fake, chat):
    status, stream, _ = _turn(chat, "429 long")
    assert status == "failed" and stream.reason == f"rate limited by the provider: {ERROR_MESSAGES['rate_limit_error']}"
    assert len(fake.requests) == 1


def test_a_wrong_base_url_names_the_settings_to_check(fake, chat, settings):
    settings.ANTHROPIC_BASE_URL = fake.url + "/proxy"
    status, stream, _ = _turn(chat, "hello")
    assert status == "failed" and stream.reason.startswith("not found (check LLM_MODEL and ANTHROPIC_BASE_URL)")


def test_a_prefix_below_the_models_minimum_is_not_cached(fake, chat):
    fake.min_cache_tokens = 1024
    _turn(chat, "first question")
    usage = get_provider().warm(messages=conversation_prefix(chat_id=chat.id))
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (0, 0)  # a miss, as warming must see it
    assert usage.input_tokens == 2 + len(REPLY.split()) + 1


def test_a_refused_request_is_not_retried(fake, chat, settings):
    settings.LLM_MODEL = ""  # the API answers 400 invalid_request_error
    status, stream, _ = _turn(chat, "hello")
    assert status == "failed" and stream.reason == "the provider refused the request: model: Field required"
    assert len(fake.requests) == 1


def test_a_stop_hangs_up_a_read_blocked_on_a_silent_provider(fake, settings):
    settings.LLM_TIMEOUT = 30
    received, seconds, returned = stop_mid_stream(get_provider(), "stall mid-stream")
    assert returned and seconds < 0.5
    assert [i.text for i in received if isinstance(i, TextDelta)] == WORDS[:3]
    assert any(isinstance(i, Usage) and i.cache_write_tokens == 2 for i in received)  # billed input is kept
    assert fake.hung_up.wait(2)  # the server saw the client hang up while it was silent


def test_a_warm_error_is_a_provider_error(fake, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-wrong"
    with pytest.raises(ProviderError, match="authentication failed"):
        get_provider().warm(messages=[{"role": "user", "content": "prefix"}])


def test_a_batch_of_warms_is_one_request_per_prefix_and_a_refused_one_fails_alone(fake, chat):
    _turn(chat, "first question")
    prefix = conversation_prefix(chat_id=chat.id)
    refused = [{"role": "robot", "content": "not a role the Messages API takes"}]

    results = get_provider().warm_many(prefixes=[prefix, refused, prefix])

    assert [type(r) for r in results] == [Usage, ProviderError, Usage]
    assert results[1].reason.startswith("the provider refused the request: messages.0.role")
    reply_tokens = len(REPLY.split())
    assert (results[0].cache_read_tokens, results[0].cache_write_tokens) == (2, reply_tokens)  # wrote through the reply
    assert (results[2].cache_read_tokens, results[2].cache_write_tokens) == (2 + reply_tokens, 0)  # and read it back
    assert [r["body"]["max_tokens"] for r in fake.requests[-3:]] == [1, 1, 1]


def test_a_missing_key_fails_at_start_with_a_clear_error():
    result = django_start(LLM_PROVIDER="anthropic", LLM_MODEL="claude-x", ANTHROPIC_API_KEY="")
    assert result.returncode != 0 and "ANTHROPIC_API_KEY must be set when LLM_PROVIDER=anthropic" in result.stderr


def test_an_unknown_provider_or_bad_base_url_fails_at_start():
    result = django_start(LLM_PROVIDER="claude")
    assert result.returncode != 0 and "LLM_PROVIDER must be one of: local, anthropic, openai" in result.stderr
    for url in ("127.0.0.1:9", "http://"):
        result = django_start(LLM_PROVIDER="anthropic", LLM_MODEL="claude-x", ANTHROPIC_API_KEY="k", ANTHROPIC_BASE_URL=url)
        assert result.returncode != 0 and "ANTHROPIC_BASE_URL must be an http:// or https:// URL with a host" in result.stderr
    result = django_start(
        LLM_PROVIDER="anthropic", LLM_MODEL="claude-x", ANTHROPIC_API_KEY="k", ANTHROPIC_BASE_URL="https://proxy.example/v1"
    )
    assert result.returncode != 0 and "ANTHROPIC_BASE_URL must not end in /v1" in result.stderr
    # Only the chosen provider's settings are checked.
    assert (
        django_start(LLM_PROVIDER="anthropic", LLM_MODEL="claude-x", ANTHROPIC_API_KEY="k", OPENAI_BASE_URL="nonsense").returncode
        == 0
    )


def test_provider_check_answers_ok_or_names_the_problem(fake, settings, capsys):
    from django.core.management import call_command

    call_command("provider_check")
    assert f"claude-fake  anthropic / claude-fake at {fake.url}: ok, usage" in capsys.readouterr().out
    settings.ANTHROPIC_API_KEY = "sk-ant-wrong"
    with pytest.raises(SystemExit):
        call_command("provider_check")
    assert "FAILED: authentication failed (check ANTHROPIC_API_KEY)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        call_command("provider_check", "--json")
    assert '"ok": false' in capsys.readouterr().out
