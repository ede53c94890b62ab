"""A WebSocket client on a bare TCP socket, for clients no library would be: one that never reads.

It does the opening handshake, sends masked text frames, and, only when told to, reads what the
server sent and parses it into frames (text as JSON, and the close frame's code).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from urllib.parse import urlsplit


class RawSocket:
    def __init__(self, ws_url: str, *, receive_buffer: int = 4096, timeout: float = 10):
        url = urlsplit(ws_url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window: the server's output backs up after a few kilobytes.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect((url.hostname, url.port))
        key = base64.b64encode(os.urandom(16)).decode()
        path = url.path + (f"?{url.query}" if url.query else "")
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        self.buffer = b""

    def send_json(self, message: dict) -> None:
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        if len(payload) < 126:
            header = struct.pack("!BB", 0x81, 0x80 | len(payload))
        else:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_all(self, *, timeout: float = 10) -> tuple[list[dict], int | None]:
        """Read until the server closes; (every text frame as JSON, the close code or None)."""
        self.sock.settimeout(timeout)
        try:
            while chunk := self.sock.recv(1 << 20):
                self.buffer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return self.frames()

    def drain(self) -> int:
        """Read and drop everything until the server closes (a client that keeps up); bytes read."""
        self.sock.settimeout(None)
        read = 0
        try:
            while chunk := self.sock.recv(1 << 20):
                read += len(chunk)
        except OSError:
            pass
        return read

    def frames(self) -> tuple[list[dict], int | None]:
        messages, close_code, at, data = [], None, 0, self.buffer
        while at + 2 <= len(data):
            opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
            at += 2
            if length == 126:
                (length,) = struct.unpack("!H", data[at : at + 2])
                at += 2
            elif length == 127:
                (length,) = struct.unpack("!Q", data[at : at + 8])
                at += 8
            payload = data[at : at + length]
            if len(payload) < length:
                break  # cut off by a dropped connection
            at += length
            if opcode == 0x1:
                messages.append(json.loads(payload))
            elif opcode == 0x8:
                close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        return messages, close_code

    def close(self) -> None:
        self.sock.close()
