"""The row-lock tests run on PostgreSQL in every configuration of the suite."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from django.conf import settings

from tests.support import postgres

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(postgres.on_postgres(), reason="this run is on PostgreSQL: the row-lock tests ran in it")


def test_the_row_lock_tests_pass_on_a_private_postgresql_database():
    server = postgres.server_url()
    if why := postgres.reachable(server):
        message = (
            f"NO POSTGRESQL at {server} ({why}): the row-lock tests (-m {postgres.MARKER}) did NOT run. "
            "Start PostgreSQL or set MOTHERSHIP_TEST_POSTGRES_URL."
        )
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    env = os.environ | {
        "DATABASE_URL": postgres.private_database_url(server, f"mothership_rowlocks_{os.getpid()}"),
        "REDIS_URL": settings.REDIS_URL,  # the Redis this run already uses
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", postgres.MARKER, "-q", "-p", "no:cacheprovider", "--no-header", "-rfEs", "tests"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
