"""A local HTTP server that speaks OpenAI's chat-completions wire format (SSE when streaming).

Scenarios are chosen by the last user message:
- "429 once": the first request answers 429 with Retry-After: 0, later ones stream normally;
- "401": 401 with an OpenAI error body;
- "drop": three chunks, then the connection is cut without the final chunk or [DONE];
- "slow": one chunk every 0.2 s (long enough to be stopped);
- "stall": three chunks, then silence for 10 s (a stop must hang up a blocked read);
- "json body": a streaming request answered 200 with one JSON completion (a server that does not stream);
- "400 model": 400 with OpenAI's model_not_found error;
- "quota": 429 insufficient_quota (no Retry-After: no wait fixes it);
- "call <tool> <JSON>" (once or more): "Let me check." then a ``tool_calls`` delta per call (id,
  name, then its arguments in two pieces), ``finish_reason: tool_calls``; a request that ends
  with ``tool`` messages is answered "The tool said: <each result>" (or, when the prompt also
  says "again", with the same calls once more);
- anything else: a role-only chunk, a few content chunks, a finish chunk, a usage chunk with
  cached tokens, then [DONE].

``quirks`` reproduce what real OpenAI-compatible servers do differently from OpenAI itself:
- "usage_chunk_choice": the usage chunk carries ``choices: [{"index": 0, "delta": {}}]``, not ``[]``;
- "no_finish_key": content chunks leave ``finish_reason`` out instead of sending null;
- "no_role_chunk": no role-only first chunk;
- "no_cached_details": usage without ``prompt_tokens_details``;
- "no_retry_after": 429s come without Retry-After.
"""

from __future__ import annotations

import json
import re
import time

from tests.support.fake_http import FakeServer, Handler

WORDS = ["Hello", " from", " the", " fake", " model", ".", " It", " streams", " in", " pieces", "."]
_CALL = re.compile(r"call ([A-Za-z0-9_-]+) (\{[^}]*\})")


def _invalid(messages: list[dict]) -> str | None:
    """What OpenAI refuses about tool messages: one must answer a call of the assistant message before."""
    asked: set[str] = set()
    for i, message in enumerate(messages):
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


class OpenAIHandler(Handler):
    def do_POST(self):
        server = self.server_state
        body = self.read_json()
        server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        prompt = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        results = []
        for message in reversed(body["messages"]):
            if message["role"] != "tool":
                break
            results.insert(0, message["content"])
        if problem := _invalid(body["messages"]):
            return self.send_json(400, {"error": {"message": problem, "type": "invalid_request_error", "code": None}})
        if "401" in prompt:
            return self.send_json(
                401,
                {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}},
            )
        wait = {} if "no_retry_after" in server.quirks else {"Retry-After": "0"}
        if "429 once" in prompt and not server.seen_429:
            server.seen_429 = True
            return self.send_json(
                429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}, wait
            )
        if "quota" in prompt:
            message = "You exceeded your current quota, please check your plan and billing details."
            return self.send_json(
                429, {"error": {"message": message, "type": "insufficient_quota", "code": "insufficient_quota"}}
            )
        if "400 model" in prompt:
            message = f"The model `{body['model']}` does not exist or you do not have access to it."
            return self.send_json(
                400, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
            )
        if not body.get("stream") or "json body" in prompt:
            return self.send_json(200, self._completion(body, cached=12))
        calls = _CALL.findall(prompt) if (not results or "again" in prompt) else []
        if calls:
            return self._sse_tool_calls(body, calls)
        if results:
            return self._sse(body, prompt, words=["The", " tool", " said:", " " + " | ".join(results)])
        self._sse(body, prompt)

    def _completion(self, body, cached):
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "."}, "finish_reason": "length"}],
            "usage": {
                "prompt_tokens": 20,
                "completion_tokens": 1,
                "total_tokens": 21,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        }

    def _chunk(self, body, delta, finish=None, usage=None):
        quirks = self.server_state.quirks
        choice = {"index": 0, "delta": delta if delta is not None else {}}
        if finish is not None or "no_finish_key" not in quirks:
            choice["finish_reason"] = finish
        choices = ([{"index": 0, "delta": {}}] if "usage_chunk_choice" in quirks else []) if usage else [choice]
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
        }
        if usage is not None:
            payload["usage"] = usage
        self.write_sse(f"data: {json.dumps(payload)}\n\n".encode())

    def _sse_tool_calls(self, body, calls):
        self.start_sse()
        self._chunk(body, {"role": "assistant", "content": "Let me check."})
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
            self._chunk(body, None, usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42})
        self.write_sse(b"data: [DONE]\n\n")
        self.end_sse()

    def _sse(self, body, prompt, words=None):
        self.start_sse()
        try:
            if "no_role_chunk" not in self.server_state.quirks:
                self._chunk(body, {"role": "assistant", "content": ""})
            words = words or WORDS * (20 if "slow" in prompt else 1)
            for i, word in enumerate(words):
                if "drop" in prompt and i == 3:
                    return self.cut()  # no final chunk, no [DONE]
                if "stall" in prompt and i == 3:
                    self.wait_for_hang_up(10)
                    return
                self._chunk(body, {"content": word})
                if "slow" in prompt:
                    time.sleep(0.2)
            self._chunk(body, {}, finish="stop")
            if body.get("stream_options", {}).get("include_usage"):
                usage = {"prompt_tokens": 30, "completion_tokens": len(words), "total_tokens": 30 + len(words)}
                if "no_cached_details" not in self.server_state.quirks:
                    usage["prompt_tokens_details"] = {"cached_tokens": 24}
                self._chunk(body, None, usage=usage)
            self.write_sse(b"data: [DONE]\n\n")
            self.end_sse()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self.server_state.disconnected.set()


class FakeOpenAI(FakeServer):
    path = "/v1"

    def __init__(self, quirks: frozenset[str] | set[str] = frozenset()):
        self.seen_429 = False
        self.tool_calls = 0
        self.quirks = set(quirks)
        super().__init__(OpenAIHandler)
