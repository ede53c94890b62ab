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
# Likewise the per-user limits: tests send, warm, create chats and start turns far faster than people do, and
# tests/mothership/test_user_limits.py tests them at their defaults.
for _name, _value in (
    ("MOTHERSHIP_SEND_RATE", "100000/min"),
    ("MOTHERSHIP_WARMING_CHANGE_RATE", "100000/min"),
    ("MOTHERSHIP_WARM_NOW_RATE", "100000/min"),
    ("MOTHERSHIP_CHAT_CREATE_RATE", "100000/min"),
    ("MOTHERSHIP_SHARE_RATE", "100000/min"),
    ("MOTHERSHIP_IMPORT_RATE", "100000/min"),
    ("MOTHERSHIP_UPLOAD_RATE", "100000/min"),
    ("MOTHERSHIP_MAX_CONCURRENT_TURNS", "100000"),
):
    os.environ.setdefault(_name, _value)
# Many socket tests connect (and reconnect) with ``/ws/?token=``; the default (off, socket tickets
# instead) is tested in tests/e2e/test_ws_tickets.py.
os.environ.setdefault("MOTHERSHIP_WS_TOKEN_IN_URL", "1")

# Attachments' bytes go to a folder of the run's own (the processes it starts inherit it), never var/.
if not os.environ.get("MOTHERSHIP_ATTACHMENT_DIR"):
    import tempfile

    os.environ["MOTHERSHIP_ATTACHMENT_DIR"] = tempfile.mkdtemp(prefix="mothership-attachments-")

from mothership import embedded_redis  # noqa: E402

embedded_redis.ensure_started(record=False)  # a running `make run` keeps its own record
