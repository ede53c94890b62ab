"""Anthropic's Messages API through the official SDK, with prompt caching.

The conversation is sent as text blocks with ``cache_control`` breakpoints (3 of the 4 the API
allows) on the last block of its last three messages: the previous question (which the previous
turn wrote to the cache), the previous reply (which a warm call wrote) and this question (written
for the next turn). A warm call marks the last question and reply, then asks one uncached token.
The usage of ``message_start`` and ``message_delta`` maps to input / cache-read / cache-creation
/ output tokens.

Tools: the chat's tools go in ``tools`` (named without dots: ``demo.roll`` is ``demo__roll``),
which the API caches before the system prompt, so a warm sends them too. A ``tool_use`` block
streams its input as ``input_json_delta`` pieces and becomes a ``ToolCall`` at its
``content_block_stop``; a round after calls sends them back as the assistant's ``tool_use`` blocks
and one user message of ``tool_result`` blocks (``is_error`` on a call that failed, was denied or
refused).

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
from collections.abc import Iterator, Sequence

import anthropic
import httpx2 as httpx  # the HTTP client the anthropic SDK is built on
from django.conf import settings

from streams.providers.attachments import attachments_of, document_data, image_data, inline_text
from streams.providers.base import (
    Failure,
    NotStreaming,
    OfferedTool,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolNames,
    Usage,
    closed_on_stop,
    provider_message,
    require_event_stream,
    retry_after,
    spend_limited,
    stream_with_retries,
    tool_call_of,
    transport_failure,
    warm_each,
)

CACHE_CONTROL = {"type": "ephemeral"}
MAX_BREAKPOINTS = 4  # the API's limit of cache_control blocks per request
WARM_PROMPT = "."  # the one uncached user block a warm call adds after the prefix

# The error types Anthropic documents, as they read to people (``{key}`` and ``{endpoint}``: the
# settings of the model to check), and whether a retry may help.
_ERROR_TYPES = {
    "authentication_error": ("authentication failed (check {key})", False),
    "permission_error": ("the API key may not use this model", False),
    "not_found_error": ("not found (check {endpoint})", False),
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


def _classify(exc: Exception, spec) -> Failure | None:
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
            reason, retryable = known[0].format(key=spec.key_hint(), endpoint=spec.endpoint_hint()), known[1]
        else:
            reason = f"the provider answered {exc.status_code}"
            retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
        if exc.status_code == 429 and spend_limited(kind, message):
            reason, retryable = "the provider refused: quota or spend limit reached", False  # no wait fixes it
        return Failure(
            reason,
            retryable=retryable,
            retry_after=retry_after(exc.response) if exc.status_code != 200 else None,
            # What to fix (the model name, the key, the request's size), or what went wrong upstream.
            message=provider_message(message),
            billed=exc.status_code == 200,  # an error event of a stream already billed; else an error answer
        )
    if isinstance(exc, _StreamCut):
        return Failure("the connection to the provider dropped", retryable=True)
    if transport := transport_failure(exc, httpx):
        return transport
    if isinstance(exc, anthropic.AnthropicError):
        return Failure(f"provider error: {type(exc).__name__}")
    return None


def attachment_block(attachment: dict, *, documents: bool) -> dict:
    """A file as a content block: an image, a PDF as a document (or its text), a text file's text."""
    if attachment["kind"] == "image":
        media_type, data = image_data(attachment)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if attachment["kind"] == "pdf" and documents:
        source = {"type": "base64", "media_type": "application/pdf", "data": document_data(attachment)}
        return {"type": "document", "source": source, "title": attachment["name"]}
    return {"type": "text", "text": inline_text(attachment)}


def _blocks(messages: list[dict], names: ToolNames, *, documents: bool = True) -> list[dict]:
    """The conversation as the API's content blocks: a question's files, then its text; an
    assistant round's ``tool_use`` blocks; the results of its calls as ``tool_result`` blocks of
    one user message."""
    request: list[dict] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if m["role"] == "tool":
            result = {"type": "tool_result", "tool_use_id": m["tool_call_id"]}
            if m["content"]:
                result["content"] = m["content"]
            if m.get("is_error"):
                result["is_error"] = True
            if request and request[-1]["role"] == "user" and request[-1]["content"][-1]["type"] == "tool_result":
                request[-1]["content"].append(result)
            else:
                request.append({"role": "user", "content": [result]})
            continue
        # The API refuses whitespace-only text (a reply stopped after a blank delta, say): skip it.
        content = [attachment_block(a, documents=documents) for a in attachments_of(m)]
        content += [{"type": "text", "text": m["content"]}] if m["content"].strip() else []
        content += [
            {"type": "tool_use", "id": call["id"], "name": names.wire_name(call["name"]), "input": call["arguments"]}
            for call in m.get("tool_calls") or ()
        ]
        if content:
            request.append({"role": m["role"], "content": content})
    return request


def tools_param(tools: Sequence[OfferedTool], names: ToolNames) -> dict:
    """The ``tools`` parameter: first in the cached prefix (before the system prompt), so a warm
    sends exactly what the next turn sends."""
    if not tools:
        return {}
    return {
        "tools": [
            {
                "name": names.wire_name(tool.name),
                **({"description": tool.description} if tool.description else {}),
                "input_schema": tool.input_schema or {"type": "object", "properties": {}},
            }
            for tool in tools
        ]
    }


def system_param(messages: list[dict]) -> dict:
    """The chat's system prompt as the API takes it: the ``system`` parameter, not a message. It
    comes first in the cached prefix, so every breakpoint after it covers it too."""
    text = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"].strip())
    return {"system": [{"type": "text", "text": text}]} if text else {}


def with_breakpoints(messages: list[dict], *, last: int, names: ToolNames | None = None, documents: bool = True) -> list[dict]:
    """``messages`` as content blocks, with ``cache_control`` on the last block of each of the
    last ``last`` messages (at most the API's limit)."""
    request = _blocks(messages, names or ToolNames(), documents=documents)
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
    takes_tool_definitions = True

    def __init__(self, spec):
        self.spec, self.model_id, self.model = spec, spec.id, spec.model
        self.client = _client(spec.api_key, spec.base_url or None, settings.LLM_TIMEOUT)

    def stream(
        self,
        *,
        messages: list[dict],
        stop: threading.Event,
        cache_key: str | None = None,
        prefix: str = "",
        tools: Sequence[OfferedTool] = (),
    ) -> Iterator[TextDelta | ToolCall | Usage]:
        # [..., previous question, previous reply, this question]: read what the previous turn
        # (its question) or a warm call (through the reply) wrote; write it all for the next turn.
        # A round after tool calls: [..., this question, the calls, their results], the same way.
        names = ToolNames(tools)
        request = with_breakpoints(messages, last=3, names=names, documents=self.spec.documents)
        params = {**tools_param(tools, names), **system_param(messages)}
        if prefix.strip():
            # Prefill: the reply goes on from the kept text. The API refuses a final assistant
            # turn that ends in whitespace, so that is left for the model to write again.
            request.append({"role": "assistant", "content": [{"type": "text", "text": prefix.rstrip()}]})
        return stream_with_retries(
            lambda: self._stream_once(request, params, names, stop),
            classify=functools.partial(_classify, spec=self.spec),
            stop=stop,
            max_retries=settings.LLM_MAX_RETRIES,
            model=self.model,
        )

    def _stream_once(
        self, request: list[dict], params: dict, names: ToolNames, stop: threading.Event
    ) -> Iterator[TextDelta | ToolCall | Usage]:
        events = self.client.messages.create(
            model=self.model, max_tokens=self.spec.max_tokens, messages=request, stream=True, **params
        )
        reports = []  # usage of message_start, then message_delta's cumulative figures
        calls: dict[int, tuple[str, str, list[str]]] = {}  # a tool_use block's index → its id, name, JSON so far
        finished = False
        try:
            with closed_on_stop(stop, events.response):
                require_event_stream(events.response)
                for event in events:
                    if stop.is_set():
                        break
                    if event.type == "message_start":
                        reports.append(event.message.usage)
                    elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                        calls[event.index] = (event.content_block.id, event.content_block.name, [])
                    elif event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield TextDelta(event.delta.text)
                        elif event.delta.type == "input_json_delta" and event.index in calls:
                            calls[event.index][2].append(event.delta.partial_json)
                    elif event.type == "content_block_stop" and event.index in calls:
                        call_id, name, parts = calls.pop(event.index)
                        yield tool_call_of(call_id, names.our_name(name), "".join(parts))
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

    def warm(self, *, messages: list[dict], tools: Sequence[OfferedTool] = ()) -> Usage:
        """The same prefix (read or written at its breakpoint), 1 output token; the answer is discarded."""
        # [..., last question, last reply]: read what the last turn wrote, write through the reply.
        names = ToolNames(tools)
        request = with_breakpoints(messages, last=2, names=names, documents=self.spec.documents)
        request.append({"role": "user", "content": [{"type": "text", "text": WARM_PROMPT}]})
        params = {**tools_param(tools, names), **system_param(messages)}
        try:
            reply = self.client.messages.create(model=self.model, max_tokens=1, messages=request, **params)
        except (anthropic.AnthropicError, httpx.HTTPError) as exc:
            failure = _classify(exc, self.spec)
            raise ProviderError(failure.said() if failure else f"provider error: {type(exc).__name__}") from exc
        return _usage(reply.usage)

    def warm_many(
        self, *, prefixes: list[list[dict]], tools: list[Sequence[OfferedTool]] | None = None
    ) -> list[Usage | Exception]:
        return warm_each(self.warm, prefixes, tools)  # one request per prefix: the API has no batched warm
