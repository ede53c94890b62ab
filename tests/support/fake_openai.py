"""A local HTTP server that speaks OpenAI's chat-completions wire format (SSE when streaming).

What it sends is what OpenAI sends: a first chunk with the role and empty content (``refusal``
and ``usage`` null), then one token a chunk, a finish chunk, and (with ``include_usage``) a usage
chunk with ``choices: []``, ``prompt_tokens_details`` and ``completion_tokens_details``; error
bodies as ``{"error": {"message", "type", "param", "code"}}``; a 429 without Retry-After.

Scenarios are chosen by the last user message:
- "429 once": the first request answers 429 (no Retry-After: the client's own back-off), later
  ones stream normally; "429 once with retry-after" adds ``Retry-After: 0``;
- "408 once", "409 once", "500 once", "503 once": the first such request answers that status
  (408 and 409 as LiteLLM sends them), later ones stream normally;
- "401": 401 with an OpenAI error body;
- "drop": three chunks, then the connection is cut without the final chunk or [DONE];
- "slow": one chunk every 0.2 s (long enough to be stopped);
- "stall": three chunks, then silence for 10 s (a stop must hang up a blocked read);
- "json body": a streaming request answered 200 with one JSON completion (a server that does not stream);
- "400 model": 400 with OpenAI's model_not_found error (what some proxies answer);
- "404 model": 404 model_not_found (what OpenAI itself answers for a model it does not know);
- "quota": 429 insufficient_quota (no wait fixes it);
- "error mid-stream": three chunks, then ``data: {"error": {…}}`` in the 200 stream, then [DONE]
  (as LiteLLM and vLLM report a failure once the stream has begun);
- "error first once": the first such request's 200 stream opens with an ``error`` chunk whose
  ``code`` is "429" (LiteLLM's upstream rate limit), later ones stream normally;
- "call <tool> <JSON>" (once or more): "Let me check." then a ``tool_calls`` delta per call (id,
  name, then its arguments in two pieces), ``finish_reason: tool_calls``; a request that ends
  with ``tool`` messages is answered "The tool said: <each result>" (or, when the prompt also
  says "again", with the same calls once more);
- anything else: the role chunk, a few content chunks, a finish chunk, a usage chunk with
  cached tokens, then [DONE].

``quirks`` reproduce what real OpenAI-compatible servers do differently from OpenAI itself:
- "usage_chunk_choice": the usage chunk carries ``choices: [{"index": 0, "delta": {}}]``, not ``[]``;
- "no_finish_key": content chunks leave ``finish_reason`` out instead of sending null;
- "role_with_text": no role chunk; the role comes with the first text (LiteLLM, Ollama);
- "no_role_chunk": no role at all;
- "no_cached_details": usage without ``prompt_tokens_details``;
- "ignores_stream": every request, streaming or not, is answered with one JSON completion (a
  proxy that drops ``stream: true``);
- "echo_key": error messages repeat the request's key (as some proxies' do).
- "wrong_key": every request is answered 401, as a server answers a key it does not know.
"""

from __future__ import annotations

import base64
import json
import re
import time

from tests.support.fake_http import FakeServer, Handler

WORDS = ["Hello", " from", " the", " fake", " model", ".", " It", " streams", " in", " pieces", "."]
_CALL = re.compile(r"call ([A-Za-z0-9_-]+) (\{[^}]*\})")


_DATA_URL = re.compile(r"^data:([a-z]+/[a-z0-9.+-]+);base64,([A-Za-z0-9+/=]+)$")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def _part_invalid(i: int, j: int, part) -> str | None:
    """What OpenAI refuses about a content part: a text, an ``image_url`` (a URL or a base64 data
    URL of an image), a ``file`` (a filename and a base64 data URL)."""
    where = f"messages[{i}].content[{j}]"
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return None if isinstance(part.get("text"), str) else f"Invalid type for '{where}.text': expected a string."
    if kind == "image_url":
        url = (part.get("image_url") or {}).get("url", "")
        found = _DATA_URL.match(url)
        if not found or found.group(1) not in _IMAGE_TYPES or not _decodes(found.group(2)):
            return f"Invalid '{where}.image_url.url': expected a base64-encoded data URL with an image MIME type."
        return None
    if kind == "file":
        file = part.get("file") or {}
        found = _DATA_URL.match(file.get("file_data", ""))
        if not file.get("filename") or not found or not _decodes(found.group(2)).startswith(b"%PDF-"):
            return f"Invalid '{where}.file': expected filename and file_data (a base64 data URL of a PDF)."
        return None
    return f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', 'input_audio', 'refusal', 'audio', and 'file'."


def _decodes(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return b""


def text_of(content) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def _invalid(messages: list[dict]) -> str | None:
    """What OpenAI refuses about tool messages (one must answer a call of the assistant message
    before) and about content parts (only a user message's; each of a known type and shape)."""
    asked: set[str] = set()
    for i, message in enumerate(messages):
        if isinstance(message.get("content"), list):
            if message.get("role") != "user":
                return f"Invalid 'messages[{i}].content': only a user message may hold image or file parts here."
            for j, part in enumerate(message["content"]):
                if problem := _part_invalid(i, j, part):
                    return problem
        if message.get("role") == "tool":
            if message.get("tool_call_id") not in asked:
                return (
                    f"Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                    f"'tool_calls' (messages.[{i}])."
                )
            continue
        asked = {c["id"] for c in message.get("tool_calls") or []}
        for call in message.get("tool_calls") or []:
            if call.get("type") != "function" or not isinstance(call.get("function", {}).get("arguments"), str):
                return f"Invalid type for 'messages[{i}].tool_calls': arguments must be a string of JSON."
    return None


def _usage(prompt: int, completion: int, cached: int | None) -> dict:
    """A usage object as OpenAI sends it (``cached`` None: without ``prompt_tokens_details``, as some servers)."""
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


def _error(message: str, kind: str | None, code, param=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# The first answer of "<status> once": (its error body's message, type, code), as servers send them.
_ONCE = {
    "408": ("litellm.Timeout: Request timed out. Received Model Group=gpt-fake", None, "408"),
    "409": ("litellm.ConflictError: the deployment is busy with another request", None, "409"),
    "429": (
        "Rate limit reached for gpt-fake in organization org-fake on requests per min (RPM): Limit 3, Used 3, "
        "Requested 1. Please try again in 20s.",
        "requests",
        "rate_limit_exceeded",
    ),
    "500": ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    "503": ("The engine is currently overloaded, please try again later.", "server_error", None),
}
_ONCE_TRIGGER = re.compile(r"\b(408|409|429|500|503) once")


class OpenAIHandler(Handler):
    def do_POST(self):
        server = self.server_state
        body = self.read_json()
        server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        prompt = next((text_of(m["content"]) for m in reversed(body["messages"]) if m["role"] == "user"), "")
        results = []
        for message in reversed(body["messages"]):
            if message["role"] != "tool":
                break
            results.insert(0, message["content"])
        if problem := _invalid(body["messages"]):
            return self.send_error_json(400, problem, "invalid_request_error", None)
        if "401" in prompt or "wrong_key" in server.quirks:
            return self.send_error_json(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        if (once := _ONCE_TRIGGER.search(prompt)) and once.group(0) not in server.failed_once:
            server.failed_once.add(once.group(0))
            wait = {"Retry-After": "0"} if "retry-after" in prompt else {}
            return self.send_error_json(int(once.group(1)), *_ONCE[once.group(1)], headers=wait)
        if "quota" in prompt:
            message = "You exceeded your current quota, please check your plan and billing details."
            return self.send_error_json(429, message, "insufficient_quota", "insufficient_quota")
        for trigger, status in (("400 model", 400), ("404 model", 404)):
            if trigger in prompt:
                message = f"The model `{body['model']}` does not exist or you do not have access to it."
                return self.send_error_json(status, message, "invalid_request_error", "model_not_found")
        if not body.get("stream") or "json body" in prompt or "ignores_stream" in server.quirks:
            return self.send_json(200, self._completion(body, cached=12))
        calls = _CALL.findall(prompt) if (not results or "again" in prompt) else []
        if calls:
            return self._sse_tool_calls(body, calls)
        if results:
            return self._sse(body, prompt, words=["The", " tool", " said:", " " + " | ".join(results)])
        self._sse(body, prompt)

    def send_error_json(self, status: int, message: str, kind: str | None, code, headers: dict | None = None) -> None:
        self.send_json(status, _error(self._echoed(message), kind, code), headers)

    def _echoed(self, message: str) -> str:
        """``message``, with the request's key repeated when the ``echo_key`` quirk asks (as proxies' auth errors do)."""
        if "echo_key" not in self.server_state.quirks:
            return message
        return f"{message} Received API Key = {self.headers.get('Authorization', '').removeprefix('Bearer ')}"

    def _completion(self, body, cached):
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ".", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "length",
                }
            ],
            "usage": _usage(20, 1, cached),
        }

    def _chunk(self, body, delta, finish=None, usage=None):
        quirks = self.server_state.quirks
        choice = {"index": 0, "delta": delta if delta is not None else {}, "logprobs": None}
        if finish is not None or "no_finish_key" not in quirks:
            choice["finish_reason"] = finish
        choices = ([{"index": 0, "delta": {}}] if "usage_chunk_choice" in quirks else []) if usage else [choice]
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if body.get("stream_options", {}).get("include_usage"):
            payload["usage"] = usage  # null on every chunk but the last, as OpenAI sends it
        self.write_sse(f"data: {json.dumps(payload)}\n\n".encode())

    def _first(self, body, text: str) -> None:
        """The reply's first chunk(s): OpenAI's role chunk, then ``text``; or as a quirk has it."""
        quirks = self.server_state.quirks
        if "role_with_text" in quirks:
            return self._chunk(body, {"role": "assistant", "content": text})
        if "no_role_chunk" not in quirks:
            self._chunk(body, {"role": "assistant", "content": "", "refusal": None})
        self._chunk(body, {"content": text})

    def _stream_error(self, message: str, kind: str | None, code) -> None:
        """An error inside the 200 stream, then its end (vLLM sends [DONE] after it)."""
        self.write_sse(f"data: {json.dumps(_error(self._echoed(message), kind, code))}\n\n".encode())
        self.write_sse(b"data: [DONE]\n\n")
        self.end_sse()

    def _sse_tool_calls(self, body, calls):
        self.start_sse()
        self._first(body, "Let me check.")
        for index, (name, arguments) in enumerate(calls):
            self.server_state.tool_calls += 1
            call_id = f"call_{self.server_state.tool_calls:04d}"
            first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            self._chunk(body, {"tool_calls": [first]})
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                self._chunk(body, {"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        self._chunk(body, {}, finish="tool_calls")
        if body.get("stream_options", {}).get("include_usage"):
            self._chunk(body, None, usage=_usage(30, 12, 0))
        self.write_sse(b"data: [DONE]\n\n")
        self.end_sse()

    def _sse(self, body, prompt, words=None):
        server = self.server_state
        self.start_sse()
        try:
            if "error first once" in prompt and not server.stream_error_sent:
                server.stream_error_sent = True
                return self._stream_error("litellm.RateLimitError: upstream rate limit, retry later", None, "429")
            words = words or WORDS * (20 if "slow" in prompt else 1)
            for i, word in enumerate(words):
                if "drop" in prompt and i == 3:
                    return self.cut()  # no final chunk, no [DONE]
                if "stall" in prompt and i == 3:
                    self.wait_for_hang_up(10)
                    return
                if "error mid-stream" in prompt and i == 3:
                    message = "litellm.APIConnectionError: OpenAIException - Connection error.\nReceived Model Group=gpt-fake"
                    return self._stream_error(message, "api_connection_error", "500")
                if i == 0:
                    self._first(body, word)
                else:
                    self._chunk(body, {"content": word})
                if "slow" in prompt:
                    time.sleep(0.2)
            self._chunk(body, {}, finish="stop")
            if body.get("stream_options", {}).get("include_usage"):
                self._chunk(body, None, usage=_usage(30, len(words), None if "no_cached_details" in server.quirks else 24))
            self.write_sse(b"data: [DONE]\n\n")
            self.end_sse()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            server.disconnected.set()


class FakeOpenAI(FakeServer):
    path = "/v1"

    def __init__(self, quirks: frozenset[str] | set[str] = frozenset()):
        self.failed_once: set[str] = set()
        self.stream_error_sent = False
        self.tool_calls = 0
        self.quirks = set(quirks)
        super().__init__(OpenAIHandler)
