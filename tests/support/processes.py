"""Real processes for tests: a Celery worker and an ASGI server bound to the test database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
from django.conf import settings

from mothership.celery import background_queue
from mothership.infra.proxies import parse_trusted_proxies
from mothership.processes import beat_argv, web_argv, worker_argv

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the database the tests use (pytest-django renamed NAME to the test DB)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def process_env(**overrides) -> dict[str, str]:
    from mothership.celery import app

    env = os.environ.copy()
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        MOTHERSHIP_CELERY_QUEUE=app.conf.task_default_queue,
        MOTHERSHIP_LOCAL_TOKENS_PER_SECOND="200",
        MOTHERSHIP_LOCAL_REPLY_TOKENS="40",
        DJANGO_SETTINGS_MODULE="mothership.settings",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, *, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (a worker's warm shutdown waits for its running turns)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.log.close()


def start_worker(tmp_path: Path, *, name: str = "worker", concurrency: int = 8, queues: str = "both", **env) -> Proc:
    """A real worker on the queue ``MOTHERSHIP_CELERY_QUEUE`` names (the session's by default):
    its turns, its background tasks, or (``queues="both"``, as most tests want) both."""
    turns = env.get("MOTHERSHIP_CELERY_QUEUE") or process_env()["MOTHERSHIP_CELERY_QUEUE"]
    names = {"turns": [turns], "background": [background_queue(turns)], "both": [turns, background_queue(turns)]}[queues]
    proc = Proc(
        worker_argv(
            concurrency=concurrency, name=f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h", queues=names, heartbeat=False
        ),
        process_env(**env),
        tmp_path / f"{name}.log",
    )
    deadline = time.monotonic() + 30
    while "ready." not in proc.output():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            out = proc.output()
            proc.stop()
            raise RuntimeError(f"worker did not start:\n{out}")
        time.sleep(0.1)
    return proc


def start_worker_on_own_queue(tmp_path: Path, *, name: str, **kwargs) -> Proc:
    """A worker on a queue of its own (``proc.queue``): only what a test routes there reaches it."""
    queue = f"{name}-{uuid.uuid4().hex[:8]}"
    proc = start_worker(tmp_path, name=name, MOTHERSHIP_CELERY_QUEUE=queue, **kwargs)
    proc.queue = queue
    return proc


def start_beat(tmp_path: Path, **env) -> Proc:
    """Real Celery beat; its tasks go to the session's queue (the session worker runs them)."""
    return Proc(beat_argv(schedule=tmp_path / "beat-schedule"), process_env(**env), tmp_path / "beat.log")


def start_server(tmp_path: Path, *, port: int | None = None, name: str = "web", **env) -> tuple[Proc, str]:
    port = port or free_port()
    env = process_env(**env)
    # As runall does: uvicorn believes X-Forwarded-* only from MOTHERSHIP_TRUSTED_PROXIES.
    trusted = parse_trusted_proxies(env.get("MOTHERSHIP_TRUSTED_PROXIES", ""))
    proc = Proc(web_argv(port=port, access_log=True, trusted_proxies=trusted), env, tmp_path / f"{name}.log")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            out = proc.output()
            proc.stop()
            raise RuntimeError(f"server did not start:\n{out}")
        time.sleep(0.1)


class routed_to:
    """Send the tasks enqueued inside this block to ``queue`` (a dedicated worker's)."""

    def __init__(self, queue: str):
        self.queue = queue

    def __enter__(self):
        from mothership.celery import app

        self.saved = app.conf.task_default_queue
        app.conf.task_default_queue = self.queue

    def __exit__(self, *exc):
        from mothership.celery import app

        app.conf.task_default_queue = self.saved
