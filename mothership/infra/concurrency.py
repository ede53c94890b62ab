"""A bound on the HTTP requests a web process runs at once; the others wait their turn, in order.

Django runs each request's sync code in a thread of its own. A burst (100 people pressing Send
together) would start 100 threads in one process, and the GIL, which is not fair, would then
give the thread that holds a row lock (or SQLite's one writer lock) a hundredth of the time:
every request of the burst gets slow, and the sockets' event loop with them. With a bound the
same work is done in the same time, a few requests at a time, each one quickly. WebSocket
connections are not counted (they are served by the event loop itself).
"""

from __future__ import annotations

import asyncio


class HttpConcurrencyLimit:
    def __init__(self, app, *, limit: int):
        self.app, self.limit = app, limit
        self._semaphore: asyncio.Semaphore | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)  # created on the server's own loop
        async with self._semaphore:
            return await self.app(scope, receive, send)
