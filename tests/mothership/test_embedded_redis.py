from __future__ import annotations

import os
import subprocess
import sys

from tests.support.processes import ROOT


def _settings_in_a_fresh_process(env: dict, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=dict(env, DJANGO_SETTINGS_MODULE="mothership.settings"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_importing_the_settings_without_redis_url_starts_no_server(tmp_path):
    # Given no REDIS_URL and no running app
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MOTHERSHIP_EMBEDDED_REDIS", "DATABASE_URL"}}
    env["MOTHERSHIP_SQLITE_PATH"] = str(tmp_path / "db.sqlite3")
    # When a command loads the settings
    script = "import django, os; django.setup(); from django.conf import settings; from mothership import embedded_redis; print(settings.REDIS_URL, settings.REDIS_EMBEDDED, embedded_redis.is_running())"
    out = _settings_in_a_fresh_process(env, script)
    # Then no redis-server was started and Redis points nowhere (commands that need it fail clearly)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["redis://127.0.0.1:1/0", "False", "False"]


def test_the_owner_exports_its_server_to_children_and_records_it_for_operators_commands(tmp_path):
    # Given the owner of the app (as `manage.py runall` does) starts the embedded server
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MOTHERSHIP_EMBEDDED_REDIS", "DATABASE_URL"}}
    env["MOTHERSHIP_SQLITE_PATH"] = str(tmp_path / "db.sqlite3")
    operator = "import django; django.setup(); from django.conf import settings; from mothership.infra.redis import get_redis; print(settings.REDIS_URL, get_redis().get('mothership:probe').decode())"
    owner = (
        "import os, subprocess, sys; from mothership import embedded_redis; url = embedded_redis.start();"
        "import redis; redis.Redis.from_url(url).set('mothership:probe', 'ok');"
        "child = subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"REDIS_URL\"])'], capture_output=True, text=True);"
        f"env = {{k: v for k, v in os.environ.items() if k not in ('REDIS_URL', 'MOTHERSHIP_EMBEDDED_REDIS')}};"
        f"operator = subprocess.run([sys.executable, '-c', {operator!r}], capture_output=True, text=True, env=env);"
        "print(url, child.stdout.strip(), operator.stdout.strip(), operator.stderr[-300:])"
    )
    out = _settings_in_a_fresh_process(env, owner)
    assert out.returncode == 0, out.stderr
    url, child_url, operator_url, probe = out.stdout.split()[:4]
    # Then a child inherits it, and a command started on its own (no REDIS_URL) finds the same server
    assert url.startswith("redis://127.0.0.1:") and child_url == url and operator_url == url and probe == "ok"
    # And the record is gone once the owner stopped it
    assert not (tmp_path / "embedded-redis.url").exists()


def test_with_redis_url_no_embedded_server_is_started(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MOTHERSHIP_EMBEDDED_REDIS"}
    env.update(
        REDIS_URL="redis://127.0.0.1:1/0",
        MOTHERSHIP_SQLITE_PATH=str(tmp_path / "db.sqlite3"),
        DJANGO_SETTINGS_MODULE="mothership.settings",
    )
    script = "import django; django.setup(); from django.conf import settings; print(settings.REDIS_URL, settings.REDIS_EMBEDDED)"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["redis://127.0.0.1:1/0", "False"]


def test_the_embedded_servers_warnings_reach_the_log_and_its_banner_does_not(caplog):
    """A disk it cannot write (a snapshot into /proc fails, as on a full disk) is in ``make run``'s output."""
    import logging
    import time

    import redis

    from mothership import embedded_redis

    saved = (embedded_redis._process, embedded_redis._workdir, embedded_redis._port, embedded_redis._persist)
    caplog.set_level(logging.DEBUG, logger="mothership.embedded_redis")
    embedded_redis._process = None
    env = dict(os.environ)
    try:
        url = embedded_redis.start(record=False)
        control = redis.Redis.from_url(url)
        control.config_set("dir", "/proc")
        control.bgsave()
        deadline = time.monotonic() + 5
        while not any("Background saving error" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            time.sleep(0.02)
    finally:
        embedded_redis.stop()
        embedded_redis._process, embedded_redis._workdir, embedded_redis._port, embedded_redis._persist = saved
        os.environ.clear()
        os.environ.update(env)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("Failed opening the RDB file" in w or "Background saving error" in w for w in warnings), warnings
    assert not any("oO0OoO0OoO0Oo" in w or "just started" in w for w in warnings), warnings
