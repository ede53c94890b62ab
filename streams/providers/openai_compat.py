"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp) through the official SDK.

Streaming chat completions with usage included; cached prompt tokens are read from
``prompt_tokens_details.cached_tokens``. Retries (rate limit with Retry-After, overload,
time-out, connection errors) happen only before the first delta; after it, an error ends the
stream as ``failed`` and the text already produced is kept. A stop closes the HTTP stream at
once, from a watcher thread, even while the SDK is blocked reading.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx2 as httpx  # the HTTP client the openai SDK is built on
import openai
from django.conf import settings

from streams.providers.base import ProviderError, TextDelta, Usage

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


def _retry_after(exc: Exception, attempt: int) -> float:
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    try:
        return min(30.0, max(0.0, float(header))) if header else min(8.0, 0.5 * 2**attempt)
    except ValueError:
        return min(8.0, 0.5 * 2**attempt)


class OpenAIProvider:
    name = "openai"

    def __init__(self):
        self.model = settings.LLM_MODEL
        self.client = openai.OpenAI(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL or None,
            timeout=settings.LLM_TIMEOUT,
            max_retries=0,  # retries are ours: only before the first delta
        )

    def stream(self, *, messages: list[dict], stop: threading.Event) -> Iterator[TextDelta | Usage]:
        attempt = 0
        while True:
            produced = False
            try:
                for item in self._stream_once(messages, stop):
                    if isinstance(item, TextDelta):
                        produced = True
                    yield item
                return
            except _RETRYABLE as exc:
                if produced or attempt >= settings.LLM_MAX_RETRIES or stop.is_set():
                    raise ProviderError(_reason(exc) + (" mid-stream" if produced else ""), retryable=True) from exc
                if stop.wait(_retry_after(exc, attempt)):
                    return
                attempt += 1
            except openai.APIError as exc:
                raise ProviderError(_reason(exc)) from exc
            except httpx.HTTPError as exc:  # the connection dropped while reading the stream
                if produced or stop.is_set():
                    if stop.is_set():
                        return
                    raise ProviderError("the connection to the provider dropped mid-stream") from exc
                if attempt >= settings.LLM_MAX_RETRIES:
                    raise ProviderError("the connection to the provider dropped") from exc
                attempt += 1

    def _stream_once(self, messages: list[dict], stop: threading.Event) -> Iterator[TextDelta | Usage]:
        response = self.client.chat.completions.create(
            model=self.model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        done = threading.Event()

        def close_on_stop():
            while not done.is_set():
                if stop.wait(0.05):
                    response.close()  # aborts a blocked read: the HTTP stream ends now
                    return

        watcher = threading.Thread(target=close_on_stop, daemon=True)
        watcher.start()
        usage = Usage()
        finished = False
        try:
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
        except (httpx.HTTPError, openai.APIError):
            if not stop.is_set():
                raise
        finally:
            done.set()
            response.close()
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
