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
    # And the record (named after the database file) is gone once the owner stopped it
    assert not (tmp_path / "db.sqlite3.redis.url").exists()


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


# An owner of the app's embedded Redis, as ``runall`` is: starts it (recorded, persisted), says its URL,
# and keeps it until its standard input closes.
_OWNER = (
    "import logging, sys; from mothership import embedded_redis\n"
    "logging.basicConfig()  # the server's log lines go out at once (they wait for a handler otherwise)\n"
    "try:\n    url = embedded_redis.start()\n"
    "except embedded_redis.DataDirInUse as exc:\n    sys.exit(f'refused: {exc}')\n"
    "print(url, flush=True); sys.stdin.read(); embedded_redis.stop()\n"
)


def _owner(database: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MOTHERSHIP_EMBEDDED_REDIS", "DATABASE_URL"}}
    env["MOTHERSHIP_SQLITE_PATH"] = database
    return subprocess.Popen(
        [sys.executable, "-c", _OWNER],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _url(owner: subprocess.Popen) -> str:
    line = owner.stdout.readline().strip()
    assert line.startswith("redis://"), (line, owner.stderr.read() if owner.poll() is not None else "")
    return line


def _done(owner: subprocess.Popen) -> None:
    owner.stdin.close()
    owner.wait(timeout=30)


def test_two_apps_whose_databases_share_a_folder_keep_their_redis_data_apart_and_a_second_owner_is_refused(tmp_path):
    import redis

    # Given two apps whose SQLite files sit in one folder, both running
    first, second = _owner(str(tmp_path / "one.sqlite3")), _owner(str(tmp_path / "two.sqlite3"))
    try:
        one, two = _url(first), _url(second)
        redis.Redis.from_url(one).set("mothership:probe", "one")
        # Then each has a server of its own, with its data in a folder named after its database file
        assert one != two and redis.Redis.from_url(two).get("mothership:probe") is None
        assert redis.Redis.from_url(one).config_get("dir")["dir"] == str(tmp_path / "one.sqlite3.redis")
        assert redis.Redis.from_url(two).config_get("dir")["dir"] == str(tmp_path / "two.sqlite3.redis")
        assert (tmp_path / "one.sqlite3.redis.url").read_text().split()[0] == one
        assert not (tmp_path / "redis").exists()

        # When a third owner starts on the first one's database (a second `make run` of one app)
        third = _owner(str(tmp_path / "one.sqlite3"))
        out, err = third.communicate(timeout=30)
        # Then it is refused, saying why and what to do, and the first one's server is untouched
        assert third.returncode == 1 and out == ""
        assert f"the embedded Redis data folder {tmp_path / 'one.sqlite3.redis'} is in use by another running app" in err
        assert f"pid {first.pid}" in err and "MOTHERSHIP_SQLITE_PATH" in err
        assert redis.Redis.from_url(one).get("mothership:probe") == b"one"
    finally:
        _done(first)
        _done(second)

    # And once the first one stopped, its database's folder is free again
    again = _owner(str(tmp_path / "one.sqlite3"))
    try:
        assert redis.Redis.from_url(_url(again)).get("mothership:probe") == b"one"  # its append-only file reloaded
    finally:
        _done(again)


def test_runall_says_clearly_that_another_app_owns_its_redis_data(tmp_path):
    # Given an app running on a database file
    first = _owner(str(tmp_path / "app.sqlite3"))
    try:
        _url(first)
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MOTHERSHIP_EMBEDDED_REDIS", "DATABASE_URL"}}
        env["MOTHERSHIP_SQLITE_PATH"] = str(tmp_path / "app.sqlite3")
        # When `make run` starts a second one on the same file
        out = subprocess.run(
            [sys.executable, "manage.py", "runall"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        # Then it stops at once with one line saying so, not a traceback
        assert out.returncode == 1
        assert out.stderr.strip().startswith("runall: the embedded Redis data folder") and "Traceback" not in out.stderr
    finally:
        _done(first)


def test_the_data_of_an_install_from_before_moves_once_to_the_folder_named_after_the_default_database(tmp_path):
    import redis

    from tests.support.redis_server import PrivateRedis

    # Given an install whose embedded Redis kept its data in var/redis/ (append-only)
    legacy = PrivateRedis(persist=True)
    redis.Redis.from_url(legacy.url).set("mothership:probe", "kept")
    redis.Redis.from_url(legacy.url).shutdown(nosave=False)  # its file complete, as a stopped app leaves it
    legacy.process.wait(timeout=10)
    (tmp_path / "redis").mkdir()
    for item in os.listdir(legacy.dir):
        os.rename(os.path.join(legacy.dir, item), tmp_path / "redis" / item)
    legacy.close()

    # When another app's database beside it (not the default file name) starts: it does not take that data
    other = _owner(str(tmp_path / "other.sqlite3"))
    try:
        assert redis.Redis.from_url(_url(other)).get("mothership:probe") is None
    finally:
        _done(other)
    assert (tmp_path / "redis").is_dir()

    # When the default database's app starts
    owner = _owner(str(tmp_path / "mothership.sqlite3"))
    try:
        url = _url(owner)
        # Then its data moved to the folder named after the database file, once, and nothing was lost
        assert redis.Redis.from_url(url).get("mothership:probe") == b"kept"
        assert not (tmp_path / "redis").exists()
        assert redis.Redis.from_url(url).config_get("dir")["dir"] == str(tmp_path / "mothership.sqlite3.redis")
    finally:
        _done(owner)
