"""Continue from kept text: the provider interface takes an assistant ``prefix`` and streams what
follows it (Anthropic: a trailing assistant message; OpenAI-format servers whose entry allows
prefill: the same; others refuse with a clear reason). The UI's Continue builds on this."""

from __future__ import annotations

import json
import threading

import pytest

from mothership.infra.llm_models import parse_llm_models
from streams.providers import ProviderError, TextDelta, get_provider
from streams.providers.base import CANNOT_CONTINUE
from streams.providers.local import LocalProvider
from tests.support import fake_anthropic, fake_openai

pytestmark = pytest.mark.django_db

CONVERSATION = [{"role": "user", "content": "Write a long answer"}]
KEPT = "The first half of the answer, stopped here. "


def _text(items) -> str:
    return "".join(i.text for i in items if isinstance(i, TextDelta))


def test_anthropic_continues_a_trailing_assistant_message_without_its_trailing_space(settings):
    server = fake_anthropic.FakeAnthropic()
    settings.LLM_MODELS = parse_llm_models(
        json.dumps([{"id": "claude", "provider": "anthropic", "model": "claude-fake", "base_url": server.url}]),
        {"ANTHROPIC_API_KEY": fake_anthropic.API_KEY},
        max_tokens=100,
    )
    try:
        items = list(get_provider().stream(messages=CONVERSATION, stop=threading.Event(), prefix=KEPT))
    finally:
        server.stop()
    assert _text(items) == "".join(fake_anthropic.WORDS)  # only what follows the kept text
    sent = server.requests[-1]["body"]["messages"]
    assert sent[-1] == {"role": "assistant", "content": [{"type": "text", "text": KEPT.rstrip()}]}
    assert sent[-2]["role"] == "user" and "cache_control" in sent[-2]["content"][-1]


@pytest.mark.parametrize("prefill", [True, False])
def test_an_openai_format_model_continues_only_where_its_entry_allows_it(settings, prefill):
    server = fake_openai.FakeOpenAI()
    entry = {"id": "vllm", "provider": "openai", "model": "m", "base_url": server.url, "prefill": prefill}
    settings.LLM_MODELS = parse_llm_models(json.dumps([entry]), {"OPENAI_API_KEY": "x"}, max_tokens=100)
    settings.LLM_MAX_RETRIES = 0
    try:
        if prefill:
            items = list(get_provider().stream(messages=CONVERSATION, stop=threading.Event(), prefix=KEPT))
            assert _text(items) == "".join(fake_openai.WORDS)
            assert server.requests[-1]["body"]["messages"][-1] == {"role": "assistant", "content": KEPT}
        else:
            with pytest.raises(ProviderError) as refused:
                list(get_provider().stream(messages=CONVERSATION, stop=threading.Event(), prefix=KEPT))
            assert refused.value.reason == CANNOT_CONTINUE and server.requests == []
    finally:
        server.stop()


def test_the_local_model_continues_with_a_reply_of_its_own_that_follows_the_kept_text(settings):
    model = LocalProvider(tokens_per_second=0, reply_tokens=8)
    fresh = _text(model.stream(messages=CONVERSATION, stop=threading.Event()))
    continued = _text(model.stream(messages=CONVERSATION, stop=threading.Event(), prefix=KEPT))
    again = _text(model.stream(messages=CONVERSATION, stop=threading.Event(), prefix=KEPT))
    assert continued == again != fresh  # deterministic, and not the reply from the start again
    assert continued.startswith(" ") and len(continued.split()) == 8
