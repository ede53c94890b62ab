"""Loaded with ``-p`` before Django's settings: the suite owns an embedded Redis when ``REDIS_URL`` is unset."""

from mothership import embedded_redis

embedded_redis.ensure_started(record=False)  # a running `make run` keeps its own record
