"""A local HTTP server that speaks OpenAI's chat-completions wire format (SSE when streaming).

Scenarios are chosen by the last user message:
- "429 once": the first request answers 429 with Retry-After: 0, later ones stream normally;
- "401": 401 with an OpenAI error body;
- "drop": three chunks, then the connection is cut without the final chunk or [DONE];
- "slow": one chunk every 0.2 s (long enough to be stopped);
- anything else: a few chunks, a usage chunk with cached tokens, then [DONE].
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ["Hello", " from", " the", " fake", " model", ".", " It", " streams", " in", " pieces", "."]


class FakeOpenAI:
    def __init__(self):
        self.requests: list[dict] = []
        self.seen_429 = False
        self.disconnected = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                prompt = body["messages"][-1]["content"]
                if "401" in prompt:
                    return self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
                if "429 once" in prompt and not server.seen_429:
                    server.seen_429 = True
                    return self._json(429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}, {"Retry-After": "0"})
                if not body.get("stream"):
                    return self._json(200, self._completion(body, cached=12))
                self._sse(body, prompt)

            def _json(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _completion(self, body, cached):
                return {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "."}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": cached}},
                }

            def _chunk(self, body, delta, finish=None, usage=None):
                choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
                payload = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": body["model"], "choices": choices}
                if usage is not None:
                    payload["usage"] = usage
                self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                self.wfile.flush()

            def _sse(self, body, prompt):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self._chunk(body, {"role": "assistant", "content": ""})
                    words = WORDS * (20 if "slow" in prompt else 1)
                    for i, word in enumerate(words):
                        if "drop" in prompt and i == 3:
                            self.connection.shutdown(2)  # cut mid-stream: no final chunk, no [DONE]
                            return
                        self._chunk(body, {"content": word})
                        if "slow" in prompt:
                            time.sleep(0.2)
                    self._chunk(body, {}, finish="stop")
                    if body.get("stream_options", {}).get("include_usage"):
                        self._chunk(body, None, usage={"prompt_tokens": 30, "completion_tokens": len(words), "total_tokens": 30 + len(words), "prompt_tokens_details": {"cached_tokens": 24}})
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnected.set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
