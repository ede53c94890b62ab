from __future__ import annotations

import os
import subprocess
import sys

from tests.support.processes import ROOT


def test_without_redis_url_the_shipped_redis_server_starts_and_is_exported_to_children(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MOTHERSHIP_EMBEDDED_REDIS", "DATABASE_URL"}}
    env["MOTHERSHIP_SQLITE_PATH"] = str(tmp_path / "db.sqlite3")
    script = (
        "import django, os, subprocess, sys; django.setup();"
        "from django.conf import settings; from mothership.redis_client import get_redis;"
        "assert settings.REDIS_EMBEDDED and os.environ['REDIS_URL'] == settings.REDIS_URL;"
        "get_redis().set('mothership:probe', 'ok');"
        "child = subprocess.run([sys.executable, '-c', 'import os, redis; print(redis.Redis.from_url(os.environ[\"REDIS_URL\"]).get(\"mothership:probe\").decode())'], capture_output=True, text=True);"
        "print(settings.REDIS_URL, child.stdout.strip())"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=dict(env, DJANGO_SETTINGS_MODULE="mothership.settings"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    url, probe = out.stdout.split()
    assert url.startswith("redis://127.0.0.1:") and probe == "ok"


def test_with_redis_url_no_embedded_server_is_started(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MOTHERSHIP_EMBEDDED_REDIS"}
    env.update(REDIS_URL="redis://127.0.0.1:1/0", MOTHERSHIP_SQLITE_PATH=str(tmp_path / "db.sqlite3"), DJANGO_SETTINGS_MODULE="mothership.settings")
    script = "import django; django.setup(); from django.conf import settings; print(settings.REDIS_URL, settings.REDIS_EMBEDDED)"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["redis://127.0.0.1:1/0", "False"]
