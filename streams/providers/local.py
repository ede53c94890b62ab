"""The embedded ``local`` model: offline, deterministic (a conversation asked again in a chat gets
another answer, as from a sampling model), with a configurable speed."""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

from django.conf import settings

from mothership.infra.redis import UNAVAILABLE, get_redis
from streams.providers.attachments import attachment_line, attachment_tokens, attachments_of
from streams.providers.base import OfferedTool, TextDelta, ToolCall, Usage

_WORDS = (
    "the mothership keeps every conversation honest about its run state while replies stream "
    "through a worker to each open tab and a tile stays yellow only while a model is really "
    "writing tokens cache warming is opt in and stops when the conversation closes nothing the "
    "model produced is ever lost on stop crash or reconnect because each event has a sequence "
    "number and a log"
).split()


ECHO = "/echo "
TOOL = "/tool "
TOOL_USAGE = 'To call a tool, write /tool <server>.<tool> {JSON arguments}, for example /tool demo.roll {"sides": 6}.'


def tool_request(messages: list[dict]) -> ToolCall | str | None:
    """A last user message ``/tool <server>.<tool> <JSON arguments>``: the call it asks for, or why
    it cannot be made (a sentence); None for any other conversation (or once the tool answered)."""
    if not messages or messages[-1]["role"] != "user" or not messages[-1]["content"].startswith(TOOL):
        return None
    name, _, raw = messages[-1]["content"][len(TOOL) :].strip().partition(" ")
    if "." not in name.strip("."):
        return TOOL_USAGE
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        return f"The arguments of /tool {name} are not JSON ({exc.msg}). {TOOL_USAGE}"
    if not isinstance(arguments, dict):
        return f"The arguments of /tool {name} must be a JSON object. {TOOL_USAGE}"
    return ToolCall(call_id=f"call_{uuid.uuid4().hex[:16]}", name=name, arguments=arguments)


def _verbatim(text: str) -> list[str]:
    """``text`` as tokens, a word (with its spaces) each."""
    return re.findall(r"\s*\S+\s*?(?=\s|$)|\s+$", text)


def markdown_reply(rng: random.Random, tokens: int) -> list[str]:
    """``tokens`` tokens of Markdown: a heading, a paragraph, a list and a code block, over and
    over, so that the offline model shows replies rendered. Each token is one word (or one piece
    of markup) with the whitespace before it, so a reply has as many words as tokens."""

    def words(n: int) -> list[str]:
        return [rng.choice(_WORDS) for _ in range(n)]

    out: list[str] = []
    while len(out) < tokens:
        out += ["\n\n##" if out else "##", *(" " + w for w in words(4))]
        first, *rest = words(24)
        out += [f"\n\n{first.capitalize()}", *(" " + w for w in rest[:-1]), f" {rest[-1]}."]
        for item in range(3):
            out += ["\n\n-" if item == 0 else "\n-", *(" " + w for w in words(5))]
        out.append("\n\n```python")
        for a, b, c in (words(3) for _ in range(3)):
            out += [f"\n{a}_{b}", " =", f' "{c}"']
        out.append("\n```")
    return out[:tokens]


def _count_tokens(text: str) -> int:
    return len(text.split())


class LocalProvider:
    name = "local"
    delta_is_token = True
    takes_tool_definitions = False

    def __init__(
        self, *, spec=None, model: str | None = None, tokens_per_second: float | None = None, reply_tokens: int | None = None
    ):
        self.model = model or (spec.model if spec is not None else settings.LLM_MODEL)
        self.model_id = spec.id if spec is not None else self.model
        self.tokens_per_second = settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND if tokens_per_second is None else tokens_per_second
        self.reply_tokens = settings.MOTHERSHIP_LOCAL_REPLY_TOKENS if reply_tokens is None else reply_tokens

    def reply_for(self, messages: list[dict], *, attempt: int = 0) -> list[str]:
        """The deterministic reply, as tokens, for a conversation (``attempt``: how many times it was
        answered before; each is answered differently). A last message that begins with ``/echo ``
        is answered with the rest of it, verbatim, a word (with its spaces) per token; so is a tool's
        result (the conversation ends with it), and a ``/tool`` request that cannot be made says why."""
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if messages and messages[-1]["role"] == "tool":
            return _verbatim(messages[-1]["content"])
        if isinstance(refused := tool_request(messages), str):
            return _verbatim(refused)
        files = attachments_of(messages[-1]) if messages and messages[-1]["role"] == "user" else []
        if files:  # one line per file of the question, then the answer (tests rely on the lines)
            lines = _verbatim("\n".join(attachment_line(a) for a in files))
            answer = self.reply_for([*messages[:-1], {"role": "user", "content": last_user}], attempt=attempt)
            return [*lines, *(["\n\n" + answer[0], *answer[1:]] if answer else [])]
        if messages and messages[-1]["role"] == "user" and last_user.startswith(ECHO):
            return _verbatim(last_user[len(ECHO) :])
        # A conversation that ends with kept assistant text asks for its continuation.
        prefix = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
        prompt = f"{last_user}\x00{prefix}" if prefix else last_user
        system = "".join(m["content"] for m in messages if m["role"] == "system")
        prompt = f"{system}\x01{prompt}" if system else prompt  # another system prompt, another answer
        prompt = f"{prompt}\x02{attempt}" if attempt else prompt  # asked again (Regenerate, Retry): another answer
        seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
        rng = random.Random(seed)
        if prefix:  # the kept text's sentence goes on
            return [" " + rng.choice(_WORDS) for _ in range(self.reply_tokens)]
        return markdown_reply(rng, self.reply_tokens)

    def stream(
        self,
        *,
        messages: list[dict],
        stop: threading.Event,
        cache_key: str | None = None,
        prefix: str = "",
        tools: Sequence[OfferedTool] = (),  # never read: a message names the tool (``/tool``)
    ) -> Iterator[TextDelta | ToolCall | Usage]:
        rate = self.tokens_per_second
        cached = self._cache.read(messages[:-1])  # the conversation so far, if still cached
        if isinstance(call := tool_request(messages), ToolCall):  # /tool: exactly that tool, then its result
            yield call
            yield Usage(input_tokens=_prefix_tokens(messages) - cached, cache_read_tokens=cached, output_tokens=1)
            return
        produced: list[str] = []
        started = time.monotonic()
        # Continuing kept text: the deterministic reply for the conversation with that text in it.
        request = [*messages, {"role": "assistant", "content": prefix}] if prefix else messages
        attempt = _asked_before(cache_key, request) if cache_key else 0
        for k, token in enumerate(self.reply_for(request, attempt=attempt), start=1):
            # Token k is due at started + k / rate, against the clock (not a sleep per token), so
            # the rate holds under CPU pressure. An Event wait: a stop is noticed at once.
            if stop.wait(max(0.0, started + k / rate - time.monotonic())) if rate > 0 else stop.is_set():
                break
            produced.append(token)
            yield TextDelta(token)
        # The whole conversation, reply included, is now the cached prefix (as after a turn with
        # a cache breakpoint at its end), so the warms that follow read it.
        total = _prefix_tokens(messages)
        written = self._cache.write([*messages, {"role": "assistant", "content": "".join(produced)}])
        yield Usage(
            input_tokens=total - cached if not written else 0,
            cache_read_tokens=cached,
            cache_write_tokens=total - cached if written else 0,
            output_tokens=len(produced),
        )

    def warm(self, *, messages: list[dict], tools: Sequence[OfferedTool] = ()) -> Usage:
        """Refresh the prefix's cache entry with a 1-token request; reports usage like Anthropic's."""
        (cached,) = self._cache.read_or_write([messages])
        return _warm_usage(messages, cached)

    def warm_many(self, *, prefixes: list[list[dict]], tools: list[Sequence[OfferedTool]] | None = None) -> list[Usage]:
        """Warm a batch of prefixes with one Redis round trip for all of them (Redis errors raise)."""
        return [_warm_usage(messages, cached) for messages, cached in zip(prefixes, self._cache.read_or_write(prefixes))]

    @property
    def _cache(self) -> SimulatedPromptCache:
        return SimulatedPromptCache(model=self.model)


ASKED_PREFIX = "mothership:local-asked:"
ASKED_TTL = 86400


def _asked_before(chat_key: str, messages: list[dict]) -> int:
    """How many times this chat asked exactly this conversation before (counted in Redis): a
    Regenerate or a Retry asks it again, and a sampling model would answer differently."""
    digest = hashlib.sha256(json.dumps(_identity(messages)).encode()).hexdigest()[:32]
    key = f"{ASKED_PREFIX}{chat_key}:{digest}"
    pipe = get_redis().pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, ASKED_TTL)
    asked, _ = pipe.execute()
    return int(asked) - 1


def _prefix_tokens(messages: list[dict]) -> int:
    return sum(_count_tokens(m["content"]) + attachment_tokens(m) for m in messages)


def _identity(messages: list[dict]) -> list[list[str]]:
    """What makes a prefix itself: each message's role and text, and its files' contents (by hash)."""
    return [[m["role"], m["content"], *(a["sha256"] for a in attachments_of(m))] for m in messages]


def _warm_usage(messages: list[dict], cached: bool | None) -> Usage:
    total = _prefix_tokens(messages)
    if cached is None:  # below the minimum cacheable size
        return Usage(input_tokens=total, output_tokens=1)
    if cached:
        return Usage(cache_read_tokens=total, output_tokens=1)
    return Usage(cache_write_tokens=total, output_tokens=1)


class SimulatedPromptCache:
    """A provider-side prompt cache, simulated in Redis: one entry per exact prefix.

    The entry lives ``MOTHERSHIP_PROMPT_CACHE_TTL`` seconds and every read refreshes it (one
    EXPIRE does both); prefixes shorter than ``MOTHERSHIP_LOCAL_CACHE_MIN_TOKENS`` are never
    cached, like a provider's minimum cacheable size. A batch of warms reads-or-writes all its
    prefixes in one pipeline.
    """

    KEY_PREFIX = "mothership:prompt-cache:"

    def __init__(self, *, model: str):
        self.model = model

    def key(self, messages: list[dict]) -> str:
        digest = hashlib.sha256(json.dumps(_identity(messages)).encode()).hexdigest()
        return f"{self.KEY_PREFIX}{self.model}:{digest}"

    def _cacheable(self, messages: list[dict]) -> bool:
        return bool(messages) and _prefix_tokens(messages) >= max(1, settings.MOTHERSHIP_LOCAL_CACHE_MIN_TOKENS)

    def read(self, messages: list[dict]) -> int:
        """Tokens read from the cache for this exact prefix (0 on a miss); refreshes the TTL."""
        if not self._cacheable(messages):
            return 0
        try:
            hit = get_redis().pexpire(self.key(messages), int(settings.MOTHERSHIP_PROMPT_CACHE_TTL * 1000))
        except UNAVAILABLE:  # a provider's cache is not our Redis: a model never fails for want of it
            return 0
        return _prefix_tokens(messages) if hit else 0

    def write(self, messages: list[dict]) -> bool:
        if not self._cacheable(messages):
            return False
        try:
            get_redis().set(self.key(messages), "1", px=int(settings.MOTHERSHIP_PROMPT_CACHE_TTL * 1000))
        except UNAVAILABLE:  # not written: the next turn misses, as after a provider's eviction
            return False
        return True

    def read_or_write(self, prefixes: list[list[dict]]) -> list[bool | None]:
        """A warm of each prefix, all in one pipeline: True if it was cached (and its TTL is
        refreshed, as by a read), False if it was not (it is written now), None if too short to cache."""
        ttl = int(settings.MOTHERSHIP_PROMPT_CACHE_TTL * 1000)
        cacheable = [self._cacheable(messages) for messages in prefixes]
        if not any(cacheable):
            return [None] * len(prefixes)
        pipe = get_redis().pipeline(transaction=False)
        for messages, ok in zip(prefixes, cacheable):
            if ok:
                key = self.key(messages)
                pipe.pexpire(key, ttl)  # a hit refreshes the entry, as a read does…
                pipe.set(key, "1", px=ttl, nx=True)  # …and a miss writes it (a no-op after a hit)
        replies = iter(pipe.execute())
        found: list[bool | None] = []
        for ok in cacheable:
            if ok:
                refreshed, _written = next(replies), next(replies)
                found.append(bool(refreshed))
            else:
                found.append(None)
        return found
