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
    CANNOT_CONTINUE,
    Failure,
    NotStreaming,
    ProviderError,
    TextDelta,
    Usage,
    closed_on_stop,
    provider_message,
    require_event_stream,
    retry_after,
    spend_limited,
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


def _error_body(exc) -> dict:
    """The ``error`` object of an error response (the SDK already unwraps it), or {}."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    return body if isinstance(body, dict) else {}


def _reason(exc: Exception) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "the provider timed out"
    if isinstance(exc, openai.APIConnectionError):
        return "could not reach the provider"
    if not isinstance(exc, openai.APIStatusError):
        return f"provider error: {type(exc).__name__}"
    error = _error_body(exc)
    message = provider_message(error.get("message"))
    if isinstance(exc, openai.AuthenticationError):
        reason = "authentication failed (check OPENAI_API_KEY)"
    elif _spent(exc):
        reason = "the provider refused: quota or spend limit reached"
    elif isinstance(exc, openai.RateLimitError):
        reason = "rate limited by the provider"
    else:
        reason = f"the provider answered {exc.status_code}"
    return f"{reason}: {message}" if message else reason  # what to fix: the model's name, the key, the plan…


def _spent(exc) -> bool:
    """A 429 that waiting does not fix (``insufficient_quota``, a spend limit)."""
    if not isinstance(exc, openai.RateLimitError):
        return False
    error = _error_body(exc)
    return spend_limited(error.get("code"), error.get("type"), error.get("message"))


def _classify(exc: Exception) -> Failure | None:
    if isinstance(exc, NotStreaming):
        return Failure(exc.reason)
    if isinstance(exc, openai.APIConnectionError):  # the SDK wraps what its HTTP client raised
        return transport_failure(exc.__cause__, httpx) or Failure(_reason(exc), retryable=True)
    if isinstance(exc, openai.APIError):
        return Failure(
            _reason(exc),
            retryable=isinstance(exc, _RETRYABLE) and not _spent(exc),
            retry_after=retry_after(getattr(exc, "response", None)),
        )
    return transport_failure(exc, httpx)


@functools.lru_cache(maxsize=4)
def _client(api_key: str, base_url: str | None, timeout: float) -> openai.OpenAI:
    """One client (and connection pool) per process and configuration, made on first use."""
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)  # retries are ours


class OpenAIProvider:
    name = "openai"
    delta_is_token = True  # a chat-completions chunk carries one token

    def __init__(self, spec):
        self.spec, self.model_id, self.model = spec, spec.id, spec.model
        self.client = _client(spec.api_key, spec.base_url or None, settings.LLM_TIMEOUT)

    def stream(
        self, *, messages: list[dict], stop: threading.Event, cache_key: str | None = None, prefix: str = ""
    ) -> Iterator[TextDelta | Usage]:
        if prefix:
            if not self.spec.prefill:
                raise ProviderError(CANNOT_CONTINUE)
            # Servers that continue a trailing assistant message (vLLM, llama.cpp, Ollama do).
            messages = [*messages, {"role": "assistant", "content": prefix}]
        return stream_with_retries(
            lambda: self._stream_once(messages, stop, cache_key),
            classify=_classify,
            stop=stop,
            max_retries=settings.LLM_MAX_RETRIES,
        )

    def _stream_once(self, messages: list[dict], stop: threading.Event, cache_key: str | None) -> Iterator[TextDelta | Usage]:
        response = self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **self._limits(self.spec.max_tokens),
            **({"prompt_cache_key": cache_key} if cache_key and self.spec.prompt_cache_key else {}),
        )
        usage = Usage()
        finished = False
        with closed_on_stop(stop, response.response):
            require_event_stream(response.response)
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

    def _limits(self, tokens: int) -> dict:
        """The output limit under the name the model takes: ``max_completion_tokens`` for OpenAI's
        reasoning models (they refuse ``max_tokens``), ``max_tokens`` for the rest (registry entry)."""
        return {self.spec.max_tokens_param: tokens}

    def warm(self, *, messages: list[dict]) -> Usage:
        """The same prefix with 1 output token; the answer is discarded."""
        try:
            completion = self.client.chat.completions.create(model=self.model, messages=messages, **self._limits(1))
        except openai.APIError as exc:
            raise ProviderError(_reason(exc)) from exc
        return _usage(completion.usage)

    def warm_many(self, *, prefixes: list[list[dict]]) -> list[Usage | Exception]:
        return warm_each(self.warm, prefixes)  # one request per prefix: the API has no batched warm
