"""Loaded with ``-p`` before Django's settings: the suite owns an embedded Redis when ``REDIS_URL`` is unset."""

import os

# The suite runs as a developer's machine does (``make run`` turns debug on too); the production
# settings are tested in processes of their own (tests/mothership/test_production_settings.py).
os.environ.setdefault("DJANGO_DEBUG", "1")
# Every test signs in from 127.0.0.1, some with wrong passwords, and the counts live in the shared
# Redis: the sign-in limits are raised for the suite and tested at their defaults by their own
# tests (tests/mothership/test_login_limits.py, which set them back).
os.environ.setdefault("MOTHERSHIP_LOGIN_RATE", "10000/min")
os.environ.setdefault("MOTHERSHIP_LOGIN_FAILURE_LIMIT", "10000")

from mothership import embedded_redis  # noqa: E402

embedded_redis.ensure_started(record=False)  # a running `make run` keeps its own record
