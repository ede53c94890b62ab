"""The one model interface: stream deltas and usage for a conversation; warm its prefix."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
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
        return {
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
        }


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
