"""The one model interface: stream deltas and usage for a conversation; warm its prefix, or a batch of prefixes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)  # the field names are chats.models.USAGE_FIELDS: Message's columns


class ProviderError(Exception):
    """A provider failure that ends a stream as ``failed`` with a readable reason."""

    def __init__(self, reason: str, *, retryable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Provider(Protocol):
    name: str
    model: str

    def stream(self, *, messages: list[dict], stop: threading.Event) -> Iterator[TextDelta | Usage]:
        """Yield text deltas then one Usage; return promptly once ``stop`` is set."""

    def warm(self, *, messages: list[dict]) -> Usage:
        """Refresh the provider's prompt cache for ``messages`` (1 output token at most)."""

    def warm_many(self, *, prefixes: list[list[dict]]) -> list[Usage | Exception]:
        """Warm each prefix of a batch: per prefix, in order, its Usage or the exception its warm raised.

        One prefix's failure never fails the others; raising means every warm of the batch failed
        with that error. The HTTP providers call ``warm`` once per prefix (``warm_each``); the
        ``local`` model does the whole batch's Redis work in one pipeline.
        """


def warm_each(warm: Callable[..., Usage], prefixes: list[list[dict]]) -> list[Usage | Exception]:
    """``warm_many`` as one ``warm(messages=…)`` call per prefix, each failure kept as its exception."""
    results: list[Usage | Exception] = []
    for messages in prefixes:
        try:
            results.append(warm(messages=messages))
        except Exception as exc:  # this prefix failed; the batch goes on
            results.append(exc)
    return results


# --- shared by the HTTP providers --------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """How a provider's exception reads to people, and whether a retry may help."""

    reason: str
    retryable: bool = False
    retry_after: float | None = None  # seconds the provider asked us to wait

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
        return Failure("could not reach the provider", retryable=True)
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
) -> Iterator[TextDelta | Usage]:
    """Run ``attempt`` until it ends; retry a retryable failure only before the first delta.

    After the first delta an error ends the stream as failed (the run loop keeps the text
    already produced): repeating the request would repeat the reply. A stop ends it quietly.
    """
    retries = 0
    while True:
        produced = False
        try:
            for item in attempt():
                produced = produced or isinstance(item, TextDelta)
                yield item
            return
        except Exception as exc:
            if stop.is_set():
                return
            failure = classify(exc)
            if failure is None:
                raise
            if produced:
                raise ProviderError(f"{failure.reason} mid-stream", retryable=failure.retryable) from exc
            delay = failure.delay(retries)
            if not failure.retryable or retries >= max_retries or delay is None:
                raise ProviderError(failure.reason, retryable=failure.retryable) from exc
            if stop.wait(delay):
                return
            retries += 1


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
