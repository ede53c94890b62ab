"""The heartbeat: a turn keeps its chat's liveness lock while it runs, or learns it lost it."""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from streams import abort, locks, workers

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Keeps the liveness lock; on loss of ownership, fences the run and stops generation."""

    def __init__(
        self,
        *,
        chat_id,
        stream_id,
        stop: threading.Event,
        fenced: threading.Event,
        on_abort=None,
        retake_lock=None,
        on_redis_away=None,
    ):
        super().__init__(name=f"heartbeat-{stream_id}", daemon=True)
        self.chat_id, self.stream_id, self.stop_generation, self.fenced = chat_id, stream_id, stop, fenced
        self.on_abort, self.retake_lock = on_abort, retake_lock
        # Told when a beat finds Redis away or its lock gone: the log may have lost its tail, even
        # while the turn appends nothing (a long tool call), so its next append writes it again first.
        self.on_redis_away = on_redis_away
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(settings.MOTHERSHIP_STREAM_HEARTBEAT):
            try:
                renewed = locks.lock_heartbeat(chat_id=self.chat_id, stream_id=self.stream_id, worker=workers.current_tag())
                if not renewed and self.retake_lock is not None:
                    self._redis_away()
                    renewed = self.retake_lock()  # a Redis restarted empty lost it: ours again, unless a newer turn's
                if not renewed:
                    logger.warning("stream %s lost its lock; fencing", self.stream_id)
                    self.fenced.set()
                    self.stop_generation.set()
                    return
                # Belt and braces for a lost publish (a half-open pub/sub socket): the key stays.
                if self.on_abort is not None and (request := abort.abort_pending(stream_id=self.stream_id)):
                    self.on_abort(request)
            except Exception:
                # Redis or the database away for a moment: the lock may still be ours; the next
                # beat (or its expiry) decides. The heartbeat never dies.
                logger.exception("heartbeat failed for stream %s", self.stream_id)
                self._redis_away()

    def _redis_away(self) -> None:
        if self.on_redis_away is not None:
            self.on_redis_away()
