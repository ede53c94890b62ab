"""Run the whole app: ASGI web server, Celery worker and Celery beat, supervised.

A child that exits (crash, kill -9, out of memory) is restarted with a short back-off while
the others keep running. Ctrl-C (or SIGTERM) stops every child and the embedded Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from mothership import embedded_redis

_COLOURS = {"web": "\033[36m", "worker": "\033[33m", "beat": "\033[35m"}
_RESET = "\033[0m"


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    pump: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, children: list[Child], *, colour: bool):
        self.children = children
        self.colour = colour
        self.stopping = threading.Event()
        self.print_lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        prefix = f"{name:>6} | "
        if self.colour:
            prefix = f"{_COLOURS.get(name, '')}{prefix}{_RESET}"
        with self.print_lock:
            sys.stdout.write(prefix + line.rstrip("\n") + "\n")
            sys.stdout.flush()

    def start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=os.environ.copy(),
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops children in order
            preexec_fn=embedded_redis._die_with_parent,
        )
        child.started_at = time.monotonic()
        child.pump = threading.Thread(target=self._pump, args=(child, child.process), daemon=True)
        child.pump.start()
        self.say(child.name, f"started (pid {child.process.pid})")

    def _pump(self, child: Child, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.say(child.name, line)

    def run(self) -> int:
        for child in self.children:
            self.start(child)
        while not self.stopping.wait(0.5):
            for child in self.children:
                code = child.process.poll()
                if code is None or self.stopping.is_set():
                    continue
                # Back off if it dies right after starting, so a broken child does not spin.
                delay = 1.0 if time.monotonic() - child.started_at > 10 else min(10.0, 1.0 + child.restarts)
                self.say(child.name, f"exited with status {code}; restarting in {delay:.0f}s")
                child.restarts += 1
                if self.stopping.wait(delay):
                    break
                self.start(child)
        return self.shutdown()

    def shutdown(self) -> int:
        for child in reversed(self.children):
            if child.process and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + 15
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(child.name, "did not stop in time; killing")
                child.process.kill()
                child.process.wait()
            self.say(child.name, "stopped")
        return 0


class Command(BaseCommand):
    help = "Run web (ASGI), Celery worker and Celery beat together, restarting any that dies."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--no-seed", action="store_true", help="Do not create the demo user and chats.")

    def handle(self, *args, port, host, no_seed, **options):
        embedded = settings.REDIS_EMBEDDED
        self.stdout.write(f"redis: {settings.REDIS_URL}{f' (embedded, pid {embedded_redis.pid()})' if embedded else ''}")
        self.stdout.write(
            f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} {settings.DATABASES['default']['NAME']}"
        )
        call_command("migrate", interactive=False, verbosity=0)
        seed = not no_seed and (not settings.DATABASE_URL or os.environ.get("MOTHERSHIP_SEED_DEMO") == "1")
        if seed:
            call_command("seed_demo")
        (settings.BASE_DIR / "var").mkdir(exist_ok=True)
        python = sys.executable
        children = [
            Child(
                "web",
                [
                    python,
                    "-m",
                    "uvicorn",
                    "mothership.asgi:application",
                    "--host",
                    host,
                    "--port",
                    str(port),
                    "--ws",
                    "websockets",
                    "--no-access-log",
                ],
            ),
            Child(
                "worker",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "mothership",
                    "worker",
                    "-P",
                    "threads",
                    "-c",
                    str(settings.CELERY_WORKER_CONCURRENCY),
                    "-l",
                    "INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "-n",
                    f"mothership-{os.getpid()}@%h",
                ],
            ),
            Child(
                "beat",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "mothership",
                    "beat",
                    "-l",
                    "INFO",
                    "--schedule",
                    str(settings.BASE_DIR / "var" / "celerybeat-schedule"),
                ],
            ),
        ]
        supervisor = Supervisor(children, colour=not options.get("no_color") and sys.stdout.isatty())

        def _stop(signum, frame):
            supervisor.stopping.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        url = f"http://{host}:{port}/"
        self.stdout.write(
            f"Mothership on {url}"
            + (f"  login: {settings.MOTHERSHIP_DEMO_USERNAME} / {settings.MOTHERSHIP_DEMO_PASSWORD}" if seed else "")
        )
        code = supervisor.run()
        embedded_redis.stop()
        self.stdout.write("all stopped")
        sys.exit(code)
