from __future__ import annotations

import uuid

import pytest

from tests.support import processes


@pytest.fixture(scope="module")
def slow_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A worker on a queue of its own whose replies are long enough to be stopped mid-way."""
    queue = f"slow-{uuid.uuid4().hex[:8]}"
    proc = processes.start_worker(
        tmp_path_factory.mktemp("slow"),
        name="slow",
        MOTHERSHIP_CELERY_QUEUE=queue,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND=100,
        MOTHERSHIP_LOCAL_REPLY_TOKENS=2000,
    )
    proc.queue = queue
    yield proc
    proc.stop()
