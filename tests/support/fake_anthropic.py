"""A local HTTP server that speaks Anthropic's Messages API wire format (SSE when streaming).

It checks what the real API checks that matters here (the key as ``x-api-key`` or Bearer, ``anthropic-version``,
``max_tokens``, roles, non-empty text, at most 4 ``cache_control`` blocks) and keeps a prompt
cache: every breakpoint writes the prefix up to it; the longest prefix already written is read.
Tokens are words. Usage reads like Anthropic's: ``input_tokens`` excludes cached tokens.

Scenarios are chosen by the last user message:
- "429 once" / "529 once" / "500 once": the first such request answers 429 (retry-after: 0) / 529
  overloaded / 500 api_error, each with Anthropic's own message (``ERROR_MESSAGES``);
- "429 long": 429 with retry-after: 120 (longer than a person waits);
- "overloaded": three deltas, then an ``error`` event (overloaded_error) in the 200 stream;
- "drop": three deltas, then the connection is cut without ``message_stop``;
- "slow": one delta every 0.2 s (long enough to be stopped);
- "stall mid-stream": three deltas, then silence for 10 s (a stop must hang up a blocked read);
- "stall before": nothing for 3 s before the headers (longer than the tests' client time-out);
- "json body": a streaming request answered 200 with one JSON message (a proxy that does not stream);
- "spend limit": 429 rate_limit_error whose message says the workspace's spend limit is reached;
- "call <tool> <JSON>" (once or more, ``<tool>`` as the request's ``tools`` name it): "Let me check."
  then a ``tool_use`` block per call (its input streamed in two ``input_json_delta`` pieces),
  ``stop_reason: tool_use``; the next request, ending with their ``tool_result`` blocks, is
  answered "The tool said: <each result's text>" (or, when the prompt also says "again", with the
  same calls once more);
- anything else: the reply ``WORDS`` with a ``ping``, ``message_delta`` usage and ``message_stop``.

``quirks`` reproduce Anthropic-format servers that differ from Anthropic's own:
- "zero_start_usage": ``message_start`` reports all zeros; the input arrives only in ``message_delta``;
- "no_ping": no ``ping`` event;
- "ignores_stream": every request, streaming or not, is answered with one JSON message (a proxy
  that drops ``stream: true``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time

from tests.support.fake_http import FakeServer, Handler

WORDS = ["Hello", " from", " the", " fake", " Claude", ".", " It", " streams", " in", " pieces", "."]
API_KEY = "sk-ant-test"
# What Anthropic's API says with each error type it retries.
ERROR_MESSAGES = {
    "rate_limit_error": (
        "This request would exceed the rate limit for your organization of 50 output tokens per minute. For details, "
        "refer to: https://docs.claude.com/en/api/rate-limits."
    ),
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
}


def _error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}


def _text_blocks(message: dict) -> list[dict]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _tokens(block: dict) -> int:
    if block.get("type", "text") != "text":
        return max(1, len(json.dumps(block, sort_keys=True).split()))
    return max(1, len(block.get("text", "").split()))


_CALL = re.compile(r"call ([A-Za-z0-9_-]+) (\{[^}]*\})")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _prompt(messages: list[dict]) -> str:
    """The text of the last user message that has text (a round after tool calls ends with results)."""
    for message in reversed(messages):
        texts = [b["text"] for b in _text_blocks(message) if message["role"] == "user" and b.get("type") == "text"]
        if texts:
            return texts[-1]
    return ""


def _results_text(message: dict) -> str:
    """The text of a user message's ``tool_result`` blocks, each (string or text blocks) in order."""
    out = []
    for block in _text_blocks(message):
        if block.get("type") == "tool_result":
            content = block.get("content", "")
            out.append(content if isinstance(content, str) else "".join(b.get("text", "") for b in content))
    return " | ".join(out)


_MEDIA = {"image": ("image/jpeg", "image/png", "image/gif", "image/webp"), "document": ("application/pdf",)}
_MAGIC = {
    "image/png": b"\x89PNG",
    "image/jpeg": b"\xff\xd8\xff",
    "image/gif": b"GIF8",
    "image/webp": b"RIFF",
    "application/pdf": b"%PDF-",
}


def _source_invalid(i: int, message: dict, block: dict) -> str | None:
    """What the API refuses about an ``image`` or ``document`` block: in a user message, a base64
    source of an allowed media type whose bytes are of that type (the API checks them)."""
    kind, source = block["type"], block.get("source") or {}
    if message["role"] != "user":
        return f"messages.{i}: {kind} blocks are only allowed in user messages"
    if source.get("type") != "base64":
        return f"messages.{i}.content.{kind}.source.type: Input should be 'base64'"
    media = source.get("media_type")
    if media not in _MEDIA[kind]:
        return f"messages.{i}.content.{kind}.source.media_type: Input should be " + " or ".join(_MEDIA[kind])
    try:
        data = base64.b64decode(source.get("data", ""), validate=True)
    except ValueError:
        return f"messages.{i}.content.{kind}.source.base64: invalid base64 data"
    if not data.startswith(_MAGIC[media]):
        return f"messages.{i}.content.{kind}.source: Image does not match the provided media type {media}"
    return None


class AnthropicHandler(Handler):
    def do_POST(self):
        server = self.server_state
        body = self.read_json()
        server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        if self.path != "/v1/messages":
            return self.send_json(404, _error("not_found_error", f"Not found: {self.path}"))
        # The SDK sends the key as a Bearer token; older clients send x-api-key. Either is accepted.
        key = self.headers.get("x-api-key") or self.headers.get("Authorization", "").removeprefix("Bearer ")
        if key != API_KEY:
            return self.send_json(401, _error("authentication_error", "invalid x-api-key"))
        if not self.headers.get("anthropic-version"):
            return self.send_json(400, _error("invalid_request_error", "anthropic-version: header is required"))
        problem = self._invalid(body)
        if problem:
            return self.send_json(400, _error("invalid_request_error", problem))
        prompt = _prompt(body["messages"])
        results = _results_text(body["messages"][-1])
        for trigger, status, kind, headers in (
            ("429 once", 429, "rate_limit_error", {"retry-after": "0"}),
            ("429 long", 429, "rate_limit_error", {"retry-after": "120"}),
            ("529 once", 529, "overloaded_error", {}),  # no retry-after: our own backoff
            ("500 once", 500, "api_error", {}),
        ):
            if trigger in prompt and (trigger not in server.failed_once or trigger == "429 long"):
                server.failed_once.add(trigger)
                return self.send_json(status, _error(kind, ERROR_MESSAGES[kind]), headers)
        if "spend limit" in prompt:
            message = "You have reached your specified workspace API usage limits. You will regain access on 2027-01-01."
            return self.send_json(429, _error("rate_limit_error", message))
        if "stall before" in prompt:
            time.sleep(3)
        usage = server.cache_usage(body["messages"], system=body.get("system"), tools=body.get("tools"))
        if not body.get("stream") or "json body" in prompt or "ignores_stream" in server.quirks:
            return self.send_json(
                200, self._message(body, [{"type": "text", "text": "."}], "max_tokens", {**usage, "output_tokens": 1})
            )
        calls = _CALL.findall(prompt) if (not results or "again" in prompt) else []
        if calls:
            return self._sse_tool_use(body, calls, usage)
        if results:
            return self._sse(body, prompt, usage, words=["The", " tool", " said:", f" {results}"])
        self._sse(body, prompt, usage)

    def _invalid(self, body) -> str | None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return "max_tokens: Field required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        breakpoints = 0
        system = body.get("system")
        if system is not None:  # a string, or text blocks (which may carry cache_control)
            if not isinstance(system, str | list) or not all(
                isinstance(b, dict) and b.get("type") == "text" and b.get("text", "").strip()
                for b in _text_blocks({"content": system})
            ):
                return "system: Input should be a valid string or a list of non-empty text blocks"
            breakpoints += sum("cache_control" in b for b in _text_blocks({"content": system}))
        for j, tool in enumerate(body.get("tools") or []):
            if not _TOOL_NAME.match(str(tool.get("name", ""))):
                return f"tools.{j}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            if not isinstance(tool.get("input_schema"), dict) or tool["input_schema"].get("type") != "object":
                return f"tools.{j}.custom.input_schema.type: Input should be 'object'"
        asked: set[str] = set()  # the tool_use ids of the assistant message before
        for i, message in enumerate(messages):
            if message.get("role") not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            blocks = _text_blocks(message)
            answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            if asked and answered != asked:
                return f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: " + ", ".join(
                    sorted(asked - answered)
                )
            if answered and (message["role"] != "user" or answered - asked):
                return f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks"
            asked = {b.get("id") for b in blocks if b.get("type") == "tool_use"} if message["role"] == "assistant" else set()
            for block in blocks:
                kind = block.get("type")
                if kind == "tool_use":
                    if message["role"] != "assistant" or not isinstance(block.get("input"), dict) or not block.get("id"):
                        return f"messages.{i}: a tool_use block needs an id, a name and an input object, in an assistant message"
                elif kind == "tool_result":
                    pass
                elif kind in ("image", "document"):
                    if problem := _source_invalid(i, message, block):
                        return problem
                elif kind != "text" or not block.get("text", "").strip():
                    return f"messages.{i}: text content blocks must be non-empty"
                if "cache_control" in block:
                    if block["cache_control"] != {"type": "ephemeral"}:
                        return f"messages.{i}.cache_control: unsupported"
                    breakpoints += 1
        if breakpoints > 4:
            return f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
        return None

    def _message(self, body, content, stop_reason, usage) -> dict:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    def _event(self, name: str, payload: dict) -> None:
        self.write_sse(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())

    def _sse_tool_use(self, body, calls, usage):
        """ "Let me check.", then a tool_use block per call, its input in two pieces; stop_reason tool_use."""
        self.start_sse()
        start = {"type": "message_start", "message": self._message(body, [], None, {**usage, "output_tokens": 1})}
        self._event("message_start", start)
        text = {"type": "text", "text": ""}
        self._event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": text})
        delta = {"type": "text_delta", "text": "Let me check."}
        self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        for index, (name, arguments) in enumerate(calls, start=1):
            self.server_state.tool_uses += 1
            block = {"type": "tool_use", "id": f"toolu_{self.server_state.tool_uses:04d}", "name": name, "input": {}}
            self._event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                delta = {"type": "input_json_delta", "partial_json": piece}
                self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            self._event("content_block_stop", {"type": "content_block_stop", "index": index})
        end = {"stop_reason": "tool_use", "stop_sequence": None}
        self._event("message_delta", {"type": "message_delta", "delta": end, "usage": {"output_tokens": 3 + 5 * len(calls)}})
        self._event("message_stop", {"type": "message_stop"})
        self.end_sse()

    def _sse(self, body, prompt, usage, words=None):
        quirks = self.server_state.quirks
        self.start_sse()
        try:
            start_usage = dict.fromkeys(usage, 0) if "zero_start_usage" in quirks else usage
            self._event(
                "message_start",
                {"type": "message_start", "message": self._message(body, [], None, {**start_usage, "output_tokens": 1})},
            )
            self._event(
                "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            )
            if "no_ping" not in quirks:
                self._event("ping", {"type": "ping"})
            words = words or WORDS * (20 if "slow" in prompt else 1)
            for i, word in enumerate(words):
                if i == 3 and "drop" in prompt:
                    return self.cut()  # no message_stop
                if i == 3 and "overloaded" in prompt:
                    self._event("error", _error("overloaded_error", ERROR_MESSAGES["overloaded_error"]))
                    return self.end_sse()
                if i == 3 and "stall mid-stream" in prompt:
                    self.wait_for_hang_up(10)
                    return
                self._event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
                )
                if "slow" in prompt:
                    time.sleep(0.2)
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {**(usage if "zero_start_usage" in quirks else {}), "output_tokens": len(words)},
                },
            )
            self._event("message_stop", {"type": "message_stop"})
            self.end_sse()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self.server_state.disconnected.set()


class FakeAnthropic(FakeServer):
    def __init__(self, quirks: frozenset[str] | set[str] = frozenset()):
        self.quirks = set(quirks)
        self.failed_once: set[str] = set()
        self.tool_uses = 0
        self.cache: dict[str, int] = {}  # prefix hash -> its tokens
        self.min_cache_tokens = 0  # like a model's minimum cacheable prompt (1024 tokens and up)
        super().__init__(AnthropicHandler)

    def cache_usage(self, messages: list[dict], system=None, tools=None) -> dict:
        """Read the longest cached prefix, write one at every breakpoint; usage like Anthropic's.
        The tools, then the system prompt, are the start of every prefix, as the API's cache order has it."""
        seen: list = [json.dumps(tools, sort_keys=True)] if tools else []
        total = sum(_tokens({"type": "tool", **tool}) for tool in tools or [])
        prefixes = []  # (hash, tokens) at each breakpoint, in order
        turns = [{"role": "system", "content": system}] if system else []
        for message in [*turns, *messages]:
            for block in _text_blocks(message):
                seen.append({"role": message["role"], **{k: v for k, v in block.items() if k != "cache_control"}})
                total += _tokens(block)
                if "cache_control" in block and total >= self.min_cache_tokens:  # shorter: silently not cached
                    prefixes.append((hashlib.sha256(json.dumps(seen).encode()).hexdigest(), total))
        read = max((tokens for key, tokens in prefixes if key in self.cache), default=0)
        written = max((tokens for _, tokens in prefixes), default=0)
        for key, tokens in prefixes:
            self.cache[key] = tokens
        creation = max(0, written - read)
        return {"input_tokens": total - read - creation, "cache_read_input_tokens": read, "cache_creation_input_tokens": creation}
