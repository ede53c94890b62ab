"""The channel layer: channels-redis' pub/sub layer with a lean receiver.

channels-redis reads its subscriptions through redis-py's ``PubSub.get_message``, which costs
hundreds of microseconds per message on this kind of machine (a timeout context, a retry
wrapper and push-notification handling for every message); a web process fanning out a
hundred streams spent most of its CPU there and fell seconds behind. Here one connection per
process reads the subscription with hiredis' C parser and hands each message to the local
queues directly, as channels-redis does. Publishing, group naming, serialization and the
queues are channels-redis' own.

A SUBSCRIBE is awaited until Redis confirms it, so a socket that joins a group and then reads
the stream's log cannot miss an event published in between. If the connection drops (a Redis
restart), it is re-opened with back-off and every subscription re-made; what was published
meanwhile is lost to live delivery (which is at-most-once anyway). Once Redis has confirmed the
subscriptions again, every consumer of the process is sent ``{"type": "layer.resubscribed"}``
(``RESUBSCRIBED``), and fills what it missed from the logs by seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections import defaultdict
from urllib.parse import unquote, urlsplit

import hiredis
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection, _wrap_close
from channels_redis.utils import decode_hosts

logger = logging.getLogger(__name__)

_RECONNECT_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0)
RESUBSCRIBED = "layer.resubscribed"  # sent to every local consumer after a reconnect; handler ``layer_resubscribed``


def _command(*parts: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Subscriber:
    """One Redis connection in subscribe mode, read with hiredis; reconnects and re-subscribes."""

    def __init__(self, address: str, on_message, on_resubscribed=None):
        self.address = address
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self.channels: set[str] = set()
        self._waiting: dict[tuple[bytes, str], list[asyncio.Future]] = defaultdict(list)
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _open(self):
        url = urlsplit(self.address)
        if url.scheme == "unix":
            reader, writer = await asyncio.open_unix_connection(url.path)
        else:
            context = ssl.create_default_context() if url.scheme == "rediss" else None
            reader, writer = await asyncio.open_connection(url.hostname or "127.0.0.1", url.port or 6379, ssl=context)
        if url.password is not None:
            auth = [unquote(url.username)] if url.username else []
            writer.write(_command("AUTH", *auth, unquote(url.password)))
            await writer.drain()
            parser = hiredis.Reader()
            while (reply := parser.gets()) is False:
                parser.feed(await reader.read(4096))
            if isinstance(reply, hiredis.ReplyError):
                writer.close()
                raise ConnectionError(f"redis refused the channel layer's AUTH: {reply}")
        return reader, writer

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                reader, writer = await self._open()
            except (OSError, ConnectionError) as exc:
                delay = _RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)]
                attempt += 1
                logger.warning("channel layer: cannot reach redis (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._writer = writer
            self._disconnected = asyncio.Event()
            if self.channels:
                confirmed = self._confirmations(b"subscribe", self.channels)
                writer.write(_command("SUBSCRIBE", *sorted(self.channels)))
                if attempt and self.on_resubscribed is not None:
                    asyncio.ensure_future(self._when_confirmed(confirmed))
            self._connected.set()
            if attempt:
                logger.warning("channel layer: reconnected to redis; %d subscriptions restored", len(self.channels))
            attempt = 0
            try:
                await self._read(reader)
            except (OSError, ConnectionError, hiredis.ProtocolError) as exc:
                logger.warning("channel layer: lost its redis connection (%s)", exc)
            finally:
                self._connected.clear()
                self._disconnected.set()
                self._writer = None
                writer.close()
            attempt = 1
            await asyncio.sleep(_RECONNECT_DELAYS[0])

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        while True:
            data = await reader.read(262144)
            if not data:
                raise ConnectionError("closed by the server")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                kind = reply[0]
                if kind == b"message":
                    self.on_message(reply[1], reply[2])
                elif kind in (b"subscribe", b"unsubscribe"):
                    for future in self._waiting.pop((kind, reply[1].decode()), ()):
                        if not future.done():
                            future.set_result(None)

    def _confirmations(self, kind: bytes, channels) -> list[asyncio.Future]:
        loop = asyncio.get_running_loop()
        futures = []
        for channel in channels:
            future = loop.create_future()
            self._waiting[(kind, channel)].append(future)
            futures.append(future)
        return futures

    async def _when_confirmed(self, futures: list[asyncio.Future]) -> None:
        """After a reconnect: once Redis confirms every subscription again, tell the consumers."""
        lost = asyncio.ensure_future(self._disconnected.wait())
        try:
            await asyncio.wait({asyncio.gather(*futures), lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if all(f.done() for f in futures):
            self.on_resubscribed()
        else:  # dropped again before confirming: the next reconnect tells them
            for waiting in self._waiting.values():
                waiting[:] = [f for f in waiting if f not in futures]

    async def _send(self, kind: bytes, channel: str) -> None:
        """Send (UN)SUBSCRIBE and wait for Redis to confirm it (or for the reconnect that re-makes it)."""
        await self._connected.wait()
        future = asyncio.get_running_loop().create_future()
        self._waiting[(kind, channel)].append(future)
        self._writer.write(_command(kind.upper(), channel))
        # A reconnect re-subscribes everything: stop waiting for this confirmation then.
        lost = asyncio.ensure_future(self._disconnected.wait())
        try:
            await asyncio.wait({future, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            with contextlib.suppress(ValueError):
                self._waiting[(kind, channel)].remove(future)

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        self.start()
        await self._send(b"subscribe", channel)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        if self._connected.is_set():
            await self._send(b"unsubscribe", channel)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _Shard(RedisSingleShardConnection):
    """channels-redis' shard, its subscriptions read by a ``_Subscriber`` (publishing unchanged)."""

    def __init__(self, host, channel_layer):
        super().__init__(host, channel_layer)
        self._subscriber = _Subscriber(host["address"], self._deliver, self._resubscribed)

    def _deliver(self, channel: bytes, data: bytes) -> None:
        layer = self.channel_layer
        name = channel.decode()
        queue = layer.channels.get(name)
        if queue is not None:
            queue.put_nowait(data)
            return
        for channel_name in layer.groups.get(name, ()):
            queue = layer.channels.get(channel_name)
            if queue is not None:
                queue.put_nowait(data)

    def _resubscribed(self) -> None:
        layer = self.channel_layer
        data = layer.channel_layer.serialize({"type": RESUBSCRIBED})
        for queue in layer.channels.values():
            queue.put_nowait(data)

    async def subscribe(self, channel):
        async with self._lock:
            if channel not in self._subscribed_to:
                await self._subscriber.subscribe(channel)
                self._subscribed_to.add(channel)

    async def unsubscribe(self, channel):
        async with self._lock:
            if channel in self._subscribed_to:
                await self._subscriber.unsubscribe(channel)
                self._subscribed_to.remove(channel)

    async def flush(self):
        await self._subscriber.close()
        self._subscriber = _Subscriber(self.host["address"], self._deliver, self._resubscribed)
        await super().flush()


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, hosts=None, prefix="asgi", **kwargs):
        super().__init__(hosts=hosts, prefix=prefix, **kwargs)
        self._shards = [_Shard(host, self) for host in decode_hosts(hosts)]


class ChannelLayer(RedisPubSubChannelLayer):
    """``channels_redis.pubsub.RedisPubSubChannelLayer`` with the lean receiver above."""

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        try:
            layer = self._layers[loop]
        except KeyError:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer


def channel_receiver(layer, channel: str):
    """``layer.receive`` bound to ``channel`` on this loop's layer: channels' proxy looks the
    loop's layer up again for every message a socket receives."""
    if isinstance(layer, RedisPubSubChannelLayer):
        return functools.partial(layer._get_layer().receive, channel)
    return functools.partial(layer.receive, channel)


async def discard_channel(layer, channel: str) -> None:
    """Forget a consumer's channel (its queue, its subscription), as ``receive`` does when it is
    cancelled waiting: a consumer stopped while a message of the channel was being dispatched
    never gets back to waiting on it."""
    if not isinstance(layer, RedisPubSubChannelLayer):
        return
    loop_layer = layer._get_layer()
    if loop_layer.channels.pop(channel, None) is not None:
        try:
            await loop_layer._get_shard(channel).unsubscribe(channel)
        except Exception:
            logger.exception("could not unsubscribe the channel of a closed socket")
