"""The Celery broker's transport: kombu's Redis transport, with our parser.

A Redis that refuses writes (``MISCONF``, ``NOREPLICAS``, ``READONLY``…) answers a worker's BRPOP
with an error reply; kombu takes a ``ResponseError`` for a broken channel and the worker stops for
good ("Unrecoverable error"). Read by our parser it is a ``WriteRefused``, a connection error:
the worker reconnects, with kombu's back-off, and consumes again once Redis takes writes.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

from mothership.infra.redis import sync_parser


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):
        return {**super()._connparams(asynchronous=asynchronous), "parser_class": sync_parser()}


class Transport(kombu_redis.Transport):
    Channel = Channel
