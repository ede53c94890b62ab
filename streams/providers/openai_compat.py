"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp) through the official SDK.

Streaming chat completions with usage included; cached prompt tokens are read from
``prompt_tokens_details.cached_tokens``. Retries (rate limit with Retry-After, overload,
time-out, connection errors) happen only before the first delta; after it, an error ends the
stream as ``failed`` and the text already produced is kept. A stop hangs up the HTTP stream at
once, from a watcher thread, even while the SDK is blocked reading.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

import httpx2 as httpx  # the HTTP client the openai SDK is built on
import openai
from django.conf import settings

from streams.providers.base import (
    Failure,
    ProviderError,
    TextDelta,
    Usage,
    closed_on_stop,
    retry_after,
    stream_with_retries,
    transport_failure,
    warm_each,
)

_RETRYABLE = (openai.RateLimitError, openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError)


def _usage(raw) -> Usage:
    if raw is None:
        return Usage()
    details = getattr(raw, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", None) or 0) if details else 0
    prompt = raw.prompt_tokens or 0
    return Usage(input_tokens=max(0, prompt - cached), cache_read_tokens=cached, output_tokens=raw.completion_tokens or 0)


def _reason(exc: Exception) -> str:
    if isinstance(exc, openai.AuthenticationError):
        return "authentication failed (check OPENAI_API_KEY)"
    if isinstance(exc, openai.RateLimitError):
        return "rate limited by the provider"
    if isinstance(exc, openai.APITimeoutError):
        return "the provider timed out"
    if isinstance(exc, openai.APIConnectionError):
        return "could not reach the provider"
    if isinstance(exc, openai.APIStatusError):
        return f"the provider answered {exc.status_code}"
    return f"provider error: {type(exc).__name__}"


def _classify(exc: Exception) -> Failure | None:
    if isinstance(exc, openai.APIConnectionError):  # the SDK wraps what its HTTP client raised
        return transport_failure(exc.__cause__, httpx) or Failure(_reason(exc), retryable=True)
    if isinstance(exc, openai.APIError):
        return Failure(
            _reason(exc), retryable=isinstance(exc, _RETRYABLE), retry_after=retry_after(getattr(exc, "response", None))
        )
    return transport_failure(exc, httpx)


@functools.lru_cache(maxsize=4)
def _client(api_key: str, base_url: str | None, timeout: float) -> openai.OpenAI:
    """One client (and connection pool) per process and configuration, made on first use."""
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)  # retries are ours


class OpenAIProvider:
    name = "openai"

    def __init__(self):
        self.model = settings.LLM_MODEL
        self.client = _client(settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL or None, settings.LLM_TIMEOUT)

    def stream(self, *, messages: list[dict], stop: threading.Event) -> Iterator[TextDelta | Usage]:
        return stream_with_retries(
            lambda: self._stream_once(messages, stop), classify=_classify, stop=stop, max_retries=settings.LLM_MAX_RETRIES
        )

    def _stream_once(self, messages: list[dict], stop: threading.Event) -> Iterator[TextDelta | Usage]:
        response = self.client.chat.completions.create(
            model=self.model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        usage = Usage()
        finished = False
        with closed_on_stop(stop, response.response):
            for chunk in response:
                if stop.is_set():
                    break
                if getattr(chunk, "usage", None):
                    usage = _usage(chunk.usage)
                for choice in chunk.choices or []:
                    text = getattr(choice.delta, "content", None)
                    if text:
                        yield TextDelta(text)
                    finished = finished or choice.finish_reason is not None
        if not finished and not stop.is_set():
            # The body ended without a finish_reason: the connection was cut, not the reply done.
            raise httpx.RemoteProtocolError("the stream ended without a finish_reason")
        yield usage

    def warm(self, *, messages: list[dict]) -> Usage:
        """The same prefix with 1 output token; the answer is discarded."""
        try:
            completion = self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=1)
        except openai.APIError as exc:
            raise ProviderError(_reason(exc)) from exc
        return _usage(completion.usage)

    def warm_many(self, *, prefixes: list[list[dict]]) -> list[Usage | Exception]:
        return warm_each(self.warm, prefixes)  # one request per prefix: the API has no batched warm
