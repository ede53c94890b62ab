"""The Celery broker's transport: kombu's Redis transport, with our parser.

A Redis that refuses writes (``MISCONF``, ``NOREPLICAS``, ``READONLY``…) answers a worker's BRPOP
with an error reply; kombu takes a ``ResponseError`` for a broken channel and the worker stops for
good ("Unrecoverable error"). Read by our parser it is a ``WriteRefused``, a connection error:
the worker reconnects, with kombu's back-off, and consumes again once Redis takes writes.

Its publishing client is made once per channel (and again only when the channel's pool is
replaced): kombu makes a new redis-py client for every message it puts, and a client's
construction (its table of response callbacks) cost more than the LPUSH itself, on every turn.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

from mothership.infra.redis import sync_parser


class Channel(kombu_redis.Channel):
    _publishing_client = None

    def _connparams(self, asynchronous=False):
        return {**super()._connparams(asynchronous=asynchronous), "parser_class": sync_parser()}

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client, pool = self._publishing_client, self.pool
        if client is None or client.connection_pool is not pool:
            client = self._publishing_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
