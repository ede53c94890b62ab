"""The embedded ``local`` model: offline, deterministic, with a configurable speed."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator

from django.conf import settings

from streams.providers.base import TextDelta, Usage

_WORDS = (
    "the mothership keeps every conversation honest about its run state while replies stream "
    "through a worker to each open tab and a tile stays yellow only while a model is really "
    "writing tokens cache warming is opt in and stops when the conversation closes nothing the "
    "model produced is ever lost on stop crash or reconnect because each event has a sequence "
    "number and a log"
).split()


def _count_tokens(text: str) -> int:
    return len(text.split())


class LocalProvider:
    name = "local"

    def __init__(self, *, model: str | None = None, tokens_per_second: float | None = None, reply_tokens: int | None = None):
        self.model = model or settings.LLM_MODEL
        self.tokens_per_second = settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND if tokens_per_second is None else tokens_per_second
        self.reply_tokens = settings.MOTHERSHIP_LOCAL_REPLY_TOKENS if reply_tokens is None else reply_tokens

    def reply_for(self, messages: list[dict]) -> list[str]:
        """The deterministic reply, as tokens, for a conversation."""
        prompt = messages[-1]["content"] if messages else ""
        seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
        rng = random.Random(seed)
        return [(w if i == 0 else " " + w) for i, w in enumerate(rng.choice(_WORDS) for _ in range(self.reply_tokens))]

    def stream(self, *, messages: list[dict], stop: threading.Event) -> Iterator[TextDelta | Usage]:
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        produced = 0
        for token in self.reply_for(messages):
            # An Event wait, not sleep: a stop is noticed at once, not after the next token.
            if stop.wait(delay) if delay else stop.is_set():
                break
            produced += 1
            yield TextDelta(token)
        yield Usage(input_tokens=sum(_count_tokens(m["content"]) for m in messages), output_tokens=produced)

    def warm(self, *, messages: list[dict]) -> Usage:
        return Usage(input_tokens=sum(_count_tokens(m["content"]) for m in messages), output_tokens=1)
