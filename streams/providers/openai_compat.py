"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp) through the official SDK.

Streaming chat completions with usage included; cached prompt tokens are read from
``prompt_tokens_details.cached_tokens``. Retries (rate limit with Retry-After, overload,
time-out, connection errors) happen only before the first delta; after it, an error ends the
stream as ``failed`` and the text already produced is kept. A stop hangs up the HTTP stream at
once, from a watcher thread, even while the SDK is blocked reading.

Tools: the chat's tools go in ``tools`` as functions (named without dots: ``demo.roll`` is
``demo__roll``); a call's ``tool_calls`` deltas (its id and name, then pieces of its arguments'
JSON, by ``index``) become ``ToolCall``s when the stream finishes; a round after calls sends the
assistant's ``tool_calls`` and one ``tool`` message per result.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator, Sequence

import httpx2 as httpx  # the HTTP client the openai SDK is built on
import openai
from django.conf import settings

from streams.providers.attachments import attachments_of, document_data, image_data, inline_text
from streams.providers.base import (
    CANNOT_CONTINUE,
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


def _retryable_status(status: int | None) -> bool:
    """What the openai SDK's own policy retries: a time-out (408), a lock time-out (409), a rate
    limit (429), a server's error (5xx)."""
    return status is not None and (status in (408, 409, 429) or status >= 500)


def _status_of(code) -> int | None:
    """An error chunk's ``code`` as an HTTP status, when it is one (LiteLLM sends "429", vLLM 400)."""
    try:
        status = int(code)
    except (TypeError, ValueError):
        return None
    return status if 100 <= status <= 599 else None


def _spent(error: dict) -> bool:
    """A refusal that waiting does not fix (``insufficient_quota``, a spend limit)."""
    return spend_limited(error.get("code"), error.get("type"), error.get("message"))


def _status_failure(exc: openai.APIStatusError, spec) -> Failure:
    """An error response (4xx, 5xx): what it means (and which setting of ``spec`` to check), the
    server's message, whether a retry may help."""
    error = _error_body(exc)
    spent = isinstance(exc, openai.RateLimitError) and _spent(error)
    if isinstance(exc, openai.AuthenticationError):
        reason = f"authentication failed (check {spec.key_hint()})"
    elif isinstance(exc, openai.NotFoundError):  # an unknown model, or a base URL without its /v1
        reason = f"not found (check {spec.endpoint_hint()})"
    elif spent:
        reason = "the provider refused: quota or spend limit reached"
    elif isinstance(exc, openai.RateLimitError):
        reason = "rate limited by the provider"
    else:
        reason = f"the provider answered {exc.status_code}"
    return Failure(
        reason,
        retryable=_retryable_status(exc.status_code) and not spent,
        retry_after=retry_after(exc.response),
        message=provider_message(error.get("message")),  # what to fix: the model's name, the key, the plan…
        billed=False,  # an error answer: the model never saw the request
    )


def _stream_error(exc: openai.APIError) -> Failure:
    """An ``error`` chunk inside a 200 stream (LiteLLM, vLLM): the server's message; before the
    first delta it is retried when its ``code`` is a status a retry may help."""
    error = _error_body(exc)
    if _spent(error):
        return Failure("the provider refused: quota or spend limit reached", message=provider_message(error.get("message")))
    return Failure(
        "the provider reported an error",
        retryable=_retryable_status(_status_of(error.get("code"))),
        message=provider_message(error.get("message") or exc.message),
    )


def _classify(exc: Exception, spec) -> Failure | None:
    if isinstance(exc, NotStreaming):
        return Failure(exc.reason)
    if isinstance(exc, openai.APITimeoutError):
        return Failure("the provider timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):  # the SDK wraps what its HTTP client raised
        return transport_failure(exc.__cause__, httpx) or Failure("could not reach the provider", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        return _status_failure(exc, spec)
    if isinstance(exc, openai.APIError):  # the SDK raises this for an error chunk of a 200 stream
        return _stream_error(exc)
    return transport_failure(exc, httpx)


def _refusal(exc: openai.APIError, spec) -> ProviderError:
    """A warm's failure as the ``ProviderError`` it raises (no retries: the next warm is the retry)."""
    failure = _classify(exc, spec) or Failure(f"provider error: {type(exc).__name__}")
    return ProviderError(failure.said(), retryable=failure.retryable)


@functools.lru_cache(maxsize=4)
def _client(api_key: str, base_url: str | None, timeout: float) -> openai.OpenAI:
    """One client (and connection pool) per process and configuration, made on first use."""
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)  # retries are ours


def wire_messages(messages: list[dict], names: ToolNames, *, documents: bool = False) -> list[dict]:
    """The conversation as chat completions take it: a question with files as content parts (the
    files, then its text); an assistant round's calls as its ``tool_calls`` (arguments as JSON
    text), each result a ``tool`` message."""
    wire = []
    for m in messages:
        if m["role"] == "tool":
            wire.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m["content"]})
        elif m.get("tool_calls"):
            calls = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": names.wire_name(call["name"]), "arguments": json.dumps(call["arguments"])},
                }
                for call in m["tool_calls"]
            ]
            wire.append({"role": "assistant", "content": m["content"] or None, "tool_calls": calls})
        elif attachments_of(m):
            parts = [attachment_part(a, documents=documents) for a in attachments_of(m)]
            parts += [{"type": "text", "text": m["content"]}] if m["content"].strip() else []
            wire.append({"role": m["role"], "content": parts})
        else:
            wire.append({"role": m["role"], "content": m["content"]})
    return wire


def attachment_part(attachment: dict, *, documents: bool) -> dict:
    """A file as a content part: an ``image_url`` (a data URL), a PDF as a ``file`` (or its text), a text file's text."""
    if attachment["kind"] == "image":
        media_type, data = image_data(attachment)
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if attachment["kind"] == "pdf" and documents:
        data = document_data(attachment)
        return {"type": "file", "file": {"filename": attachment["name"], "file_data": f"data:application/pdf;base64,{data}"}}
    return {"type": "text", "text": inline_text(attachment)}


def tools_param(tools: Sequence[OfferedTool], names: ToolNames) -> dict:
    if not tools:
        return {}
    return {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": names.wire_name(tool.name),
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.input_schema or {"type": "object", "properties": {}},
                },
            }
            for tool in tools
        ]
    }


class OpenAIProvider:
    name = "openai"
    delta_is_token = True  # a chat-completions chunk carries one token
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
        names = ToolNames(tools)
        request = wire_messages(messages, names, documents=self.spec.documents)
        if prefix:
            if not self.spec.prefill:
                raise ProviderError(CANNOT_CONTINUE, billed=False)  # nothing is sent
            # Servers that continue a trailing assistant message (vLLM, llama.cpp, Ollama do).
            request.append({"role": "assistant", "content": prefix})
        params = {
            **tools_param(tools, names),
            **({"prompt_cache_key": cache_key} if cache_key and self.spec.prompt_cache_key else {}),
        }
        return stream_with_retries(
            lambda: self._stream_once(request, params, names, stop),
            classify=functools.partial(_classify, spec=self.spec),
            stop=stop,
            max_retries=settings.LLM_MAX_RETRIES,
            model=self.model,
        )

    def _stream_once(
        self, messages: list[dict], params: dict, names: ToolNames, stop: threading.Event
    ) -> Iterator[TextDelta | ToolCall | Usage]:
        response = self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **self._limits(self.spec.max_tokens),
            **params,
        )
        usage = Usage()
        finished = False
        calls: dict[int, list] = {}  # a call's index → [its id, its name, its arguments' JSON so far]
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
                    for part in getattr(choice.delta, "tool_calls", None) or ():
                        call = calls.setdefault(part.index, ["", "", []])
                        call[0] = call[0] or part.id or ""
                        function = part.function
                        if function is not None:
                            call[1] = call[1] or function.name or ""
                            call[2].append(function.arguments or "")
                    finished = finished or choice.finish_reason is not None
        if not finished and not stop.is_set():
            # The body ended without a finish_reason: the connection was cut, not the reply done.
            raise httpx.RemoteProtocolError("the stream ended without a finish_reason")
        if not stop.is_set():
            for index in sorted(calls):
                call_id, name, parts = calls[index]
                yield tool_call_of(call_id or f"call_{index}", names.our_name(name), "".join(parts))
        yield usage

    def _limits(self, tokens: int) -> dict:
        """The output limit under the name the model takes: ``max_completion_tokens`` for OpenAI's
        reasoning models (they refuse ``max_tokens``), ``max_tokens`` for the rest (registry entry)."""
        return {self.spec.max_tokens_param: tokens}

    def warm(self, *, messages: list[dict], tools: Sequence[OfferedTool] = ()) -> Usage:
        """The same prefix with 1 output token; the answer is discarded."""
        names = ToolNames(tools)
        try:
            completion = self.client.chat.completions.create(
                model=self.model,
                messages=wire_messages(messages, names, documents=self.spec.documents),
                **self._limits(1),
                **tools_param(tools, names),
            )
        except openai.APIError as exc:
            raise _refusal(exc, self.spec) from exc
        return _usage(completion.usage)

    def warm_many(
        self, *, prefixes: list[list[dict]], tools: list[Sequence[OfferedTool]] | None = None
    ) -> list[Usage | Exception]:
        return warm_each(self.warm, prefixes, tools)  # one request per prefix: the API has no batched warm
