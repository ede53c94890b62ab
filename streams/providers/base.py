"""The one model interface: stream deltas and usage for a conversation; warm its prefix, or a batch of prefixes."""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

from mothership.infra.secrets import mask
from streams.providers.attachments import attachment_tokens

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCall:
    """The model asks for a tool (``<server>.<tool>``); its round ends after the calls it asks for."""

    call_id: str
    name: str
    arguments: dict
    problem: str = ""  # why the call cannot be made as the model wrote it (its arguments were not a JSON object)


class OfferedTool(Protocol):
    """A tool as a model is offered it (``mothership.infra.mcp.client.ToolSpec``)."""

    name: str  # ``<server>.<tool>``
    description: str
    input_schema: dict


# The APIs' rule for a tool's name (Anthropic's and OpenAI's alike): no dots, at most 64 characters.
_WIRE_NAME_LIMIT = 64
_NOT_IN_WIRE_NAME = re.compile(r"[^A-Za-z0-9_-]")


class ToolNames:
    """Each offered tool's name on the wire (``demo.roll`` → ``demo__roll``) and back.

    The same tools always get the same names (the order they are offered in decides a clash), so a
    warm and the turn after it send the same bytes.
    """

    def __init__(self, tools: Sequence[OfferedTool] = ()):
        self.wire: dict[str, str] = {}
        self.ours: dict[str, str] = {}
        for tool in tools:
            name = self.wire_name(tool.name)
            self.wire[tool.name], self.ours[name] = name, tool.name

    def wire_name(self, name: str) -> str:
        if name in self.wire:
            return self.wire[name]
        base = _NOT_IN_WIRE_NAME.sub("_", name.replace(".", "__", 1))[:_WIRE_NAME_LIMIT] or "tool"
        candidate, n = base, 1
        while candidate in self.ours:
            n += 1
            suffix = f"_{n}"
            candidate = base[: _WIRE_NAME_LIMIT - len(suffix)] + suffix
        return candidate

    def our_name(self, wire: str) -> str:
        """The ``<server>.<tool>`` a model's call names (a name never offered stays as it is: refused)."""
        return self.ours.get(wire, wire)


def tool_call_of(call_id: str, name: str, raw_arguments: str) -> ToolCall:
    """A call the model streamed, its arguments parsed from their JSON text (empty: no arguments)."""
    try:
        arguments = json.loads(raw_arguments) if raw_arguments.strip() else {}
    except ValueError as exc:
        return ToolCall(call_id, name, {}, problem=f"its arguments were not valid JSON ({exc.msg})")
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, {}, problem="its arguments were not a JSON object")
    return ToolCall(call_id, name, arguments)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False  # filled in from the text (``with_estimate``): the provider reported nothing

    def as_dict(self) -> dict[str, int]:
        """The counts, named as chats.models.USAGE_FIELDS: Message's columns."""
        return {
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
        }

    def plus(self, other: Usage) -> Usage:
        """The usage of two model rounds of one turn, together."""
        return Usage(
            **{name: count + getattr(other, name) for name, count in self.as_dict().items()},
            estimated=self.estimated or other.estimated,
        )

    def event_fields(self) -> dict:
        """The fields of a ``stream.usage`` event: the counts, and ``estimated`` when they are."""
        return {"usage": self.as_dict(), **({"estimated": True} if self.estimated else {})}


# A token is about four characters of English text for the models this app speaks to (OpenAI's
# and Anthropic's tokenizers); a message costs a few tokens of its own (role, separators).
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def with_estimate(usage: Usage, *, prompt: list[dict] | None, text: str, finished: bool) -> Usage:
    """``usage`` with what the provider did not report estimated from the prompt and the reply.

    OpenAI-format servers report usage only in their last chunk, and some Anthropic-format
    servers the input only in ``message_delta``; Anthropic's own ``message_start`` counts one
    output token. So a stopped or failed turn often arrives with no figures, or a partial one,
    although it was billed for what it wrote. A figure the provider reported is kept, except the
    start's one output token of a reply that did not finish (the count of its end never came).
    """
    reported_input = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    input_missing = reported_input == 0 and bool(prompt)
    output_estimate = estimate_tokens(text)
    # Anthropic's message_start counts 1 output token; a stop before message_delta leaves it there.
    partial = not finished and usage.output_tokens <= 1 < output_estimate
    output_missing = bool(text) and (usage.output_tokens == 0 or partial)
    if not (input_missing or output_missing):
        return usage
    estimated_input = sum(estimate_tokens(m.get("content", "")) + attachment_tokens(m) + TOKENS_PER_MESSAGE for m in prompt or [])
    return replace(
        usage,
        input_tokens=estimated_input if input_missing else usage.input_tokens,
        output_tokens=output_estimate if output_missing else usage.output_tokens,
        estimated=True,
    )


CANNOT_CONTINUE = "this model cannot continue from kept text (prefill is off in its LLM_MODELS entry)"


class ProviderError(Exception):
    """A provider failure that ends a stream as ``failed`` with a readable reason.

    ``billed`` False: the request never reached the model (an error answer, no connection, a
    request never sent), so the provider billed nothing for it and no usage is estimated.
    """

    def __init__(self, reason: str, *, retryable: bool = False, billed: bool = True):
        reason = mask(reason)  # a turn's reason, a warm's lastError, provider_check: never a key
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.billed = billed


class Provider(Protocol):
    name: str  # the provider: "local", "anthropic", "openai"
    model: str  # the provider's name of the model
    model_id: str  # the deployment's id of it (streams.providers.registry)
    # Whether each text delta it streams is one token (so a turn's output is counted as it
    # arrives, for its budget); else a delta's tokens are estimated from its characters.
    delta_is_token: bool
    # Whether the model is sent the definitions of the tools it may call (the HTTP APIs); the
    # ``local`` model calls a tool only when a message names it (``/tool``), and needs none.
    takes_tool_definitions: bool

    def stream(
        self,
        *,
        messages: list[dict],
        stop: threading.Event,
        cache_key: str | None = None,
        prefix: str = "",
        tools: Sequence[OfferedTool] = (),
    ) -> Iterator[TextDelta | ToolCall | Usage]:
        """Yield text deltas (and, from a model that calls tools, ``ToolCall``s) then one Usage;
        return promptly once ``stop`` is set. ``cache_key`` (the conversation's id) lets a provider
        that routes by it reach the same prompt cache. ``prefix``: the reply continues this kept
        text (the deltas are what follows it); a model that cannot continue raises
        ``ProviderError`` (``CANNOT_CONTINUE``). ``tools``: what the model may call. A round
        after tool calls ends ``messages`` with the assistant's ``tool_calls`` and one
        ``{"role": "tool", …}`` message per result."""

    def warm(self, *, messages: list[dict], tools: Sequence[OfferedTool] = ()) -> Usage:
        """Refresh the provider's prompt cache for ``tools`` and ``messages`` (1 output token at most)."""

    def warm_many(
        self, *, prefixes: list[list[dict]], tools: list[Sequence[OfferedTool]] | None = None
    ) -> list[Usage | Exception]:
        """Warm each prefix of a batch (with its tools, ``tools[i]``): per prefix, in order, its
        Usage or the exception its warm raised.

        One prefix's failure never fails the others; raising means every warm of the batch failed
        with that error. The HTTP providers call ``warm`` once per prefix (``warm_each``); the
        ``local`` model does the whole batch's Redis work in one pipeline.
        """


def warm_each(
    warm: Callable[..., Usage], prefixes: list[list[dict]], tools: list[Sequence[OfferedTool]] | None = None
) -> list[Usage | Exception]:
    """``warm_many`` as one ``warm(messages=…, tools=…)`` call per prefix, each failure kept as its exception."""
    results: list[Usage | Exception] = []
    for i, messages in enumerate(prefixes):
        try:
            results.append(warm(messages=messages, **({"tools": tools[i]} if tools else {})))
        except Exception as exc:  # this prefix failed; the batch goes on
            results.append(exc)
    return results


# --- shared by the HTTP providers --------------------------------------------------------

MAX_MESSAGE_CHARS = 300
# A 429 that no wait fixes: the account's quota, credit or spend limit (OpenAI's
# ``insufficient_quota``; other servers say it in words).
_SPEND_LIMIT = re.compile(r"insufficient_quota|quota|credit balance|spend(ing)? limit|billing|usage limit", re.IGNORECASE)


def provider_message(message) -> str:
    """The server's own error message as a turn's reason may show it: one line, trimmed, secrets masked."""
    if not isinstance(message, str):
        return ""
    line = mask(" ".join(message.split()))
    return line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 1] + "…"


def spend_limited(*texts) -> bool:
    return any(isinstance(t, str) and _SPEND_LIMIT.search(t) for t in texts)


class NotStreaming(Exception):
    """A streaming request answered with one JSON body: a server (or proxy) that does not stream."""

    def __init__(self, message: str):
        reason = "the provider answered without streaming (does the server support stream: true?)"
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = str(self)


def require_event_stream(response) -> None:
    """Before reading a streaming response: a JSON body instead of events raises ``NotStreaming``
    with the body's message (an error object's, else the start of the body), never read as a
    dropped connection and retried."""
    if "json" not in response.headers.get("content-type", "").lower():
        return
    raw = response.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    message = ""
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else body.get("message")
        if not message and "choices" in body:
            message = "a whole completion came back as one JSON body"
    raise NotStreaming(provider_message(message or raw.decode("utf-8", "replace")))


@dataclass(frozen=True)
class Failure:
    """How a provider's exception reads to people, and whether a retry may help."""

    reason: str
    retryable: bool = False
    retry_after: float | None = None  # seconds the provider asked us to wait
    message: str = ""  # the server's own words (``provider_message``): what to fix, or what went wrong upstream
    billed: bool = True  # False: an error answer (4xx, 5xx) or no connection; the model saw nothing

    def said(self, *, mid_stream: bool = False) -> str:
        """The turn's reason: ours, where it happened, then the server's message."""
        reason = f"{self.reason} mid-stream" if mid_stream else self.reason
        return mask(f"{reason}: {self.message}" if self.message else reason)  # the hints name endpoints

    def delay(self, attempt: int) -> float | None:
        """Seconds to wait before the next attempt; None when the provider asks for longer than
        a person waits for a reply to start (the turn fails now instead)."""
        if self.retry_after is not None:
            return max(0.0, self.retry_after) if self.retry_after <= MAX_RETRY_AFTER else None
        return min(8.0, 0.5 * 2**attempt)


MAX_RETRY_AFTER = 30.0  # seconds


def transport_failure(exc: BaseException | None, httpx) -> Failure | None:
    """An error of the SDK's HTTP client (``httpx``), raw or as the cause of the SDK's own error."""
    if isinstance(exc, httpx.TimeoutException):
        return Failure("the provider timed out", retryable=True)
    if isinstance(exc, httpx.ConnectError):
        return Failure("could not reach the provider", retryable=True, billed=False)
    if isinstance(exc, httpx.HTTPError):
        return Failure("the connection to the provider dropped", retryable=True)
    return None


def retry_after(response) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds) from an error response, if it has one."""
    if response is None:
        return None
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = response.headers.get(header)
        if value:
            try:
                return float(value) / scale
            except ValueError:
                continue
    return None


def stream_with_retries(
    attempt: Callable[[], Iterator[TextDelta | Usage]],
    *,
    classify: Callable[[Exception], Failure | None],
    stop: threading.Event,
    max_retries: int,
    model: str = "",
) -> Iterator[TextDelta | Usage]:
    """Run ``attempt`` until it ends; retry a retryable failure only before the first delta.

    After the first delta an error ends the stream as failed (the run loop keeps the text
    already produced): repeating the request would repeat the reply. A stop ends it quietly.
    Each retry is logged (``model``, the reason, which retry, the wait), so a slow first token
    has an explanation in the worker's log.
    """
    retries = 0
    while True:
        produced = False
        try:
            for item in attempt():
                produced = produced or isinstance(item, TextDelta | ToolCall)
                yield item
            return
        except Exception as exc:
            if stop.is_set():
                return
            failure = classify(exc)
            if failure is None:
                raise
            if produced:
                raise ProviderError(failure.said(mid_stream=True), retryable=failure.retryable) from exc
            delay = failure.delay(retries)
            if not failure.retryable or retries >= max_retries or delay is None:
                raise ProviderError(failure.said(), retryable=failure.retryable, billed=failure.billed) from exc
            retries += 1
            # The reason only, never the exception: an SDK's error text may carry the request's key.
            logger.warning("%s: retry %d of %d in %.1f s after: %s", model, retries, max_retries, delay, failure.said())
            if stop.wait(delay):
                return


def hang_up(response) -> None:
    """Shut down the connection under an httpx response, so that a read blocked on it returns now.

    Closing a socket from another thread does not wake a ``recv`` already blocked on it (Linux);
    ``shutdown`` does. The base class's method is called on purpose: ``SSLSocket.shutdown`` would
    also drop the TLS state the reading thread is using.
    """
    stream = (getattr(response, "extensions", None) or {}).get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed by its reader
        pass


@contextmanager
def closed_on_stop(stop: threading.Event, response):
    """While the body is read, hang up on ``response`` as soon as ``stop`` is set; close it after."""
    done = threading.Event()
    lock = threading.Lock()

    def watch():
        while not done.is_set():
            if stop.wait(0.05):
                with lock:
                    if not done.is_set():
                        hang_up(response)
                return

    watcher = threading.Thread(target=watch, name="provider-stop-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        with lock:
            done.set()
        response.close()
