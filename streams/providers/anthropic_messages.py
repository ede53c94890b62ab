"""Anthropic's Messages API through the official SDK, with prompt caching.

The conversation is sent as text blocks with ``cache_control`` breakpoints (3 of the 4 the API
allows) on the last block of its last three messages: the previous question (which the previous
turn wrote to the cache), the previous reply (which a warm call wrote) and this question (written
for the next turn). A warm call marks the last question and reply, then asks one uncached token.
The usage of ``message_start`` and ``message_delta`` maps to input / cache-read / cache-creation
/ output tokens.

Retries (rate limit with retry-after, overload, 5xx, time-out, connection errors) happen only
before the first delta; after it, an error (an HTTP failure, an ``error`` event such as
``overloaded_error``, or a body that ends without ``message_stop``) ends the stream as
``failed`` and the text already produced is kept, with the usage reported so far. A stop hangs
up the HTTP stream at once (a stop that lands before the response headers takes effect when
they arrive; the turn itself ends at once either way).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

import anthropic
import httpx2 as httpx  # the HTTP client the anthropic SDK is built on
from django.conf import settings

from streams.providers.base import (
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

CACHE_CONTROL = {"type": "ephemeral"}
MAX_BREAKPOINTS = 4  # the API's limit of cache_control blocks per request
WARM_PROMPT = "."  # the one uncached user block a warm call adds after the prefix

# The error types Anthropic documents, as they read to people, and whether a retry may help.
_ERROR_TYPES = {
    "authentication_error": ("authentication failed (check ANTHROPIC_API_KEY)", False),
    "permission_error": ("the API key may not use this model", False),
    "not_found_error": ("not found (check LLM_MODEL and ANTHROPIC_BASE_URL)", False),
    "invalid_request_error": ("the provider refused the request", False),
    "request_too_large": ("the conversation is too large for the provider", False),
    "billing_error": ("the provider refused: billing", False),
    "rate_limit_error": ("rate limited by the provider", True),
    "overloaded_error": ("the provider is overloaded", True),
    "api_error": ("the provider had an internal error", True),
    "timeout_error": ("the provider timed out", True),
}


class _StreamCut(Exception):
    """The body ended without ``message_stop``: the connection was cut, not the reply done."""


def _error(body) -> tuple[str | None, str]:
    """The ``error.type`` and ``error.message`` of an Anthropic error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, ""
    kind, message = error.get("type"), error.get("message")
    return (kind if isinstance(kind, str) else None), (message if isinstance(message, str) else "")


def _classify(exc: Exception) -> Failure | None:
    if isinstance(exc, NotStreaming):
        return Failure(exc.reason)
    if isinstance(exc, anthropic.APITimeoutError):
        return Failure("the provider timed out", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError):  # the SDK wraps what its HTTP client raised
        return transport_failure(exc.__cause__, httpx) or Failure("could not reach the provider", retryable=True)
    if isinstance(exc, anthropic.APIStatusError):
        # An ``error`` event in the middle of a 200 stream arrives here too, with its body.
        kind, message = _error(exc.body)
        known = _ERROR_TYPES.get(kind or "")
        if known:
            reason, retryable = known
        else:
            reason = f"the provider answered {exc.status_code}"
            retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
        if exc.status_code == 429 and spend_limited(kind, message):
            reason, retryable = "the provider refused: quota or spend limit reached", False  # no wait fixes it
        message = provider_message(message)
        if message and not retryable:
            reason = f"{reason}: {message}"  # what to fix: the model name, the key, the request's size…
        return Failure(reason, retryable=retryable, retry_after=retry_after(exc.response) if exc.status_code != 200 else None)
    if isinstance(exc, _StreamCut):
        return Failure("the connection to the provider dropped", retryable=True)
    if transport := transport_failure(exc, httpx):
        return transport
    if isinstance(exc, anthropic.AnthropicError):
        return Failure(f"provider error: {type(exc).__name__}")
    return None


def _blocks(messages: list[dict]) -> list[dict]:
    # The API refuses whitespace-only text (a reply stopped after a blank delta, say): skip it.
    return [
        {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]}
        for m in messages
        if m["role"] != "system" and m["content"].strip()
    ]


def system_param(messages: list[dict]) -> dict:
    """The chat's system prompt as the API takes it: the ``system`` parameter, not a message. It
    comes first in the cached prefix, so every breakpoint after it covers it too."""
    text = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"].strip())
    return {"system": [{"type": "text", "text": text}]} if text else {}


def with_breakpoints(messages: list[dict], *, last: int) -> list[dict]:
    """``messages`` as text blocks, with ``cache_control`` on the last block of each of the last
    ``last`` messages (at most the API's limit)."""
    request = _blocks(messages)
    for message in request[-min(last, MAX_BREAKPOINTS) :] if last > 0 else []:
        message["content"][-1]["cache_control"] = CACHE_CONTROL
    return request


_USAGE_FIELDS = {
    "input_tokens": "input_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
    "output_tokens": "output_tokens",
}


def _usage(*reports) -> Usage:
    """Usage from ``message_start`` then ``message_delta`` (cumulative: a later figure wins)."""
    counts = dict.fromkeys(_USAGE_FIELDS.values(), 0)
    for report in reports:
        for field, ours in _USAGE_FIELDS.items():
            value = getattr(report, field, None) if report is not None else None
            if value is not None:
                counts[ours] = value
    return Usage(**counts)


@functools.lru_cache(maxsize=4)
def _client(api_key: str, base_url: str | None, timeout: float) -> anthropic.Anthropic:
    """One client (and connection pool) per process and configuration, made on first use."""
    return anthropic.Anthropic(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=0,  # retries are ours: only before the first delta
        open_telemetry=False,
    )


class AnthropicProvider:
    name = "anthropic"
    delta_is_token = False  # a text_delta carries a few tokens

    def __init__(self, spec):
        self.spec, self.model_id, self.model = spec, spec.id, spec.model
        self.client = _client(spec.api_key, spec.base_url or None, settings.LLM_TIMEOUT)

    def stream(
        self, *, messages: list[dict], stop: threading.Event, cache_key: str | None = None, prefix: str = ""
    ) -> Iterator[TextDelta | Usage]:
        # [..., previous question, previous reply, this question]: read what the previous turn
        # (its question) or a warm call (through the reply) wrote; write it all for the next turn.
        request = with_breakpoints(messages, last=3)
        system = system_param(messages)
        if prefix.strip():
            # Prefill: the reply goes on from the kept text. The API refuses a final assistant
            # turn that ends in whitespace, so that is left for the model to write again.
            request.append({"role": "assistant", "content": [{"type": "text", "text": prefix.rstrip()}]})
        return stream_with_retries(
            lambda: self._stream_once(request, system, stop), classify=_classify, stop=stop, max_retries=settings.LLM_MAX_RETRIES
        )

    def _stream_once(self, request: list[dict], system: dict, stop: threading.Event) -> Iterator[TextDelta | Usage]:
        events = self.client.messages.create(
            model=self.model, max_tokens=self.spec.max_tokens, messages=request, stream=True, **system
        )
        reports = []  # usage of message_start, then message_delta's cumulative figures
        finished = False
        try:
            with closed_on_stop(stop, events.response):
                require_event_stream(events.response)
                for event in events:
                    if stop.is_set():
                        break
                    if event.type == "message_start":
                        reports.append(event.message.usage)
                    elif event.type == "content_block_delta":
                        text = getattr(event.delta, "text", None)  # text_delta; other block kinds carry no text
                        if text:
                            yield TextDelta(text)
                    elif event.type == "message_delta":
                        reports.append(event.usage)
                    elif event.type == "message_stop":
                        finished = True
            if not finished and not stop.is_set():
                raise _StreamCut("the stream ended without message_stop")
        except Exception:
            if reports:  # what the provider has billed so far is recorded, whatever ended the turn
                yield _usage(*reports)
            if stop.is_set():
                return
            raise
        yield _usage(*reports)

    def warm(self, *, messages: list[dict]) -> Usage:
        """The same prefix (read or written at its breakpoint), 1 output token; the answer is discarded."""
        # [..., last question, last reply]: read what the last turn wrote, write through the reply.
        request = with_breakpoints(messages, last=2)
        request.append({"role": "user", "content": [{"type": "text", "text": WARM_PROMPT}]})
        try:
            reply = self.client.messages.create(model=self.model, max_tokens=1, messages=request, **system_param(messages))
        except (anthropic.AnthropicError, httpx.HTTPError) as exc:
            failure = _classify(exc)
            raise ProviderError(failure.reason if failure else f"provider error: {type(exc).__name__}") from exc
        return _usage(reply.usage)

    def warm_many(self, *, prefixes: list[list[dict]]) -> list[Usage | Exception]:
        return warm_each(self.warm, prefixes)  # one request per prefix: the API has no batched warm
