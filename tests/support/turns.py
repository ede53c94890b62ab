"""Helpers for provider tests: a whole turn run in-process, a stopped stream, a settings check."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from chats.models import Message
from streams.models import Stream
from streams.services import stream_run, stream_start
from tests.support.processes import ROOT


def run_turn(chat, content: str) -> tuple[str, Stream, Message]:
    """Send ``content`` and run the turn in this process; (run status, stream, assistant message)."""
    turn = stream_start(chat=chat, content=content)
    status = stream_run(stream_id=turn.stream.id)
    return status, Stream.objects.get(pk=turn.stream.id), Message.objects.get(pk=turn.assistant_message.pk)


def stop_mid_stream(provider, prompt: str, *, after: float = 0.5) -> tuple[list, float, bool]:
    """Stream ``prompt``, set the stop after ``after`` s; (items received, seconds to return, returned)."""
    stop = threading.Event()
    received: list = []
    consumer = threading.Thread(
        target=lambda: received.extend(provider.stream(messages=[{"role": "user", "content": prompt}], stop=stop))
    )
    consumer.start()
    time.sleep(after)
    stop.set()
    stopped = time.monotonic()
    consumer.join(5)
    return received, time.monotonic() - stopped, not consumer.is_alive()


def django_start(**env) -> subprocess.CompletedProcess:
    """Load the settings in a fresh process with ``env``: how a misconfiguration fails at start."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mothership.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
