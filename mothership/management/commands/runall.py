"""Run the whole app: ``WEB_CONCURRENCY`` web processes, ``MOTHERSHIP_WORKER_PROCESSES``
Celery workers and exactly one Celery beat, supervised.

Each web process gets its own listening socket on the same port (``SO_REUSEPORT``): the kernel
spreads new connections across them evenly (with one shared socket, the process that wakes
first takes them, so a burst of reconnecting tabs can land on one process). The supervisor
closes the socket of a web process that dies, so the others take every new connection at once,
and opens a new one for its replacement; a single web process keeps its socket, so a connection
that arrives while it restarts waits in the backlog instead of being refused. A child that exits (crash, kill -9, out of
memory) is restarted with a short back-off while the others keep running.

A child that hangs is restarted too: each beats its heartbeat file every second (web from its
event loop, workers and beat from a thread: ``mothership.infra.alive``), and one whose file is
older than ``MOTHERSHIP_HANG_SECONDS`` (stopped, deadlocked, its event loop blocked) has its
listening socket closed at once, is killed and started again. Every line is printed with the
time. Ctrl-C (or SIGTERM) stops every child and the embedded Redis.
"""

from __future__ import annotations

import datetime
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from mothership import embedded_redis
from mothership.celery import background_queue
from mothership.infra import alive, logs
from mothership.infra.secrets import mask
from mothership.processes import beat_argv, web_argv, worker_argv

_COLOURS = {"web": "\033[36m", "worker": "\033[33m", "background": "\033[32m", "beat": "\033[35m"}  # by kind: web-2 is cyan too
_RESET = "\033[0m"


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    pump: threading.Thread | None = field(default=None, repr=False)
    pass_fds: tuple[int, ...] = ()
    # A web process of several: its own listening socket, closed when it dies (the others take
    # every new connection at once) and opened again for its replacement.
    listener: socket.socket | None = field(default=None, repr=False)
    reopen: Callable[[], socket.socket] | None = field(default=None, repr=False)
    heartbeat: Path | None = None  # the file it beats (mothership.infra.alive)

    def close_listener(self) -> None:
        if self.listener is not None and self.reopen is not None and self.listener.fileno() != -1:
            self.listener.close()

    def open_listener(self) -> None:
        if self.listener is not None and self.reopen is not None and self.listener.fileno() == -1:
            self.listener = self.reopen()
            self.argv = web_argv(fd=self.listener.fileno(), trusted_proxies=settings.MOTHERSHIP_TRUSTED_PROXIES)
            self.pass_fds = (self.listener.fileno(),)


def stamp() -> str:
    """The time at the start of every line ``runall`` prints."""
    return datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]


# A child that has not beaten yet is given this long to boot (imports, migrations checks, the broker).
BOOT_GRACE = 60.0


class Supervisor:
    def __init__(self, children: list[Child], *, colour: bool, hang_seconds: float = 10.0, json_lines: bool = False):
        self.children = children
        self.colour = colour
        # MOTHERSHIP_LOG_FORMAT=json: every line is one JSON object (the children's as they wrote
        # them; the supervisor's own, and any child line that is not JSON, made one).
        self.json_lines = json_lines
        self.hang_seconds = hang_seconds
        self.stopping = threading.Event()
        self.print_lock = threading.Lock()

    def say(self, name: str, line: str, *, printed: bool = False) -> None:
        """A line about ``name``: the supervisor's own, or (``printed``) one the child printed."""
        if self.json_lines:
            text = line.rstrip("\n")
            if not (printed and text.startswith("{") and text.endswith("}")):
                text = logs.json_line(name, text, logger=logs.PRINTED_LOGGER if printed else logs.RUNALL_LOGGER)
            with self.print_lock:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            return
        line = mask(line)  # a child's words that bypassed its logging (a crash's traceback, a tool server's stderr)
        prefix = f"{name:>10} | "
        if self.colour:
            prefix = f"{_COLOURS.get(name.split('-')[0], '')}{prefix}{_RESET}"
        with self.print_lock:
            sys.stdout.write(f"{stamp()} {prefix}{line.rstrip(chr(10))}\n")
            sys.stdout.flush()

    def start(self, child: Child) -> None:
        env = os.environ.copy()
        env[logs.PROCESS_NAME_ENV] = child.name
        if child.heartbeat is not None:
            child.heartbeat.unlink(missing_ok=True)  # the last run's beats say nothing of this one
            env[alive.ENV] = str(child.heartbeat)
        child.process = subprocess.Popen(
            child.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops children in order
            pass_fds=child.pass_fds,
            preexec_fn=embedded_redis._die_with_parent,
        )
        child.started_at = time.monotonic()
        child.pump = threading.Thread(target=self._pump, args=(child, child.process, child.listener), daemon=True)
        child.pump.start()
        self.say(child.name, f"started (pid {child.process.pid})")

    def _pump(self, child: Child, process: subprocess.Popen, listener: socket.socket | None) -> None:
        for line in process.stdout:
            self.say(child.name, line, printed=True)
        # Its output ended: it is dying. Its socket (this one, never its replacement's) goes at
        # once, before the next connection lands there.
        if process.wait() is not None and not self.stopping.is_set() and listener is child.listener:
            child.close_listener()

    def hung(self, child: Child) -> float | None:
        """Seconds since its last beat, when that is past ``hang_seconds`` (or it never beat within
        ``BOOT_GRACE``); None while it answers."""
        if child.heartbeat is None or child.process is None or child.process.poll() is not None:
            return None
        age = alive.age(child.heartbeat)
        if age is None:
            since_start = time.monotonic() - child.started_at
            return since_start if since_start > max(BOOT_GRACE, self.hang_seconds) else None
        return age if age > self.hang_seconds else None

    def kill_hung(self, child: Child) -> None:
        silent = self.hung(child)
        if silent is None:
            return
        # New connections go to the live processes from now on; its own are dropped with it.
        child.close_listener()
        self.say(child.name, f"not answering: no heartbeat for {silent:.1f}s; killing it (pid {child.process.pid})")
        try:
            os.killpg(child.process.pid, signal.SIGKILL)  # a stopped process dies too
        except ProcessLookupError:
            pass
        child.process.wait()

    def run(self, *, on_tick=None) -> int:
        """Start every child, then restart any that dies or hangs; ``on_tick`` runs every half second too."""
        for child in self.children:
            self.start(child)
        while not self.stopping.wait(0.5):
            if on_tick is not None:
                on_tick()
            for child in self.children:
                if not self.stopping.is_set():
                    self.kill_hung(child)
                code = child.process.poll()
                if code is None or self.stopping.is_set():
                    continue
                # Back off if it dies right after starting, so a broken child does not spin.
                delay = 1.0 if time.monotonic() - child.started_at > 10 else min(10.0, 1.0 + child.restarts)
                # Its listening socket first: from here on, every new connection goes to a live process.
                child.close_listener()
                self.say(child.name, f"exited with status {code}; restarting in {delay:.0f}s")
                child.restarts += 1
                if self.stopping.wait(delay):
                    break
                child.open_listener()
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


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket for one web process (bound with ``SO_REUSEPORT`` when there are several)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Command(BaseCommand):
    help = "Run web (ASGI), Celery worker and Celery beat together, restarting any that dies."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--no-seed", action="store_true", help="Do not create the demo user and chats.")

    def line(self, text: str) -> None:
        if settings.MOTHERSHIP_LOG_FORMAT == "json":
            self.stdout.write(logs.json_line("runall", text))
        else:
            self.stdout.write(f"{stamp()} {text}")

    def handle(self, *args, port, host, no_seed, **options):
        embedded = settings.REDIS_EMBEDDED
        self.line(f"redis: {settings.REDIS_URL}{f' (embedded, pid {embedded_redis.pid()})' if embedded else ''}")
        self.line(
            f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} {settings.DATABASES['default']['NAME']}"
        )
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)  # compressed copies for WhiteNoise
        seed = settings.DEBUG and not no_seed and (not settings.DATABASE_URL or os.environ.get("MOTHERSHIP_SEED_DEMO") == "1")
        if seed:
            said = io.StringIO()
            call_command("seed_demo", stdout=said)
            for text in said.getvalue().splitlines():
                self.line(text)
        (settings.BASE_DIR / "var").mkdir(exist_ok=True)
        web_processes, worker_processes = settings.MOTHERSHIP_WEB_PROCESSES, settings.MOTHERSHIP_WORKER_PROCESSES
        several = web_processes > 1
        listeners = [listening_socket(host, port, reuse_port=several) for _ in range(web_processes)]
        children = [
            Child(
                f"web-{i}" if several else "web",
                web_argv(fd=sock.fileno(), trusted_proxies=settings.MOTHERSHIP_TRUSTED_PROXIES),
                pass_fds=(sock.fileno(),),
                listener=sock,
                # Alone, its socket stays open: a connection waits in the backlog for its restart.
                reopen=(lambda: listening_socket(host, port, reuse_port=True)) if several else None,
            )
            for i, sock in enumerate(listeners, start=1)
        ]
        turns, background = settings.CELERY_TASK_DEFAULT_QUEUE, background_queue(settings.CELERY_TASK_DEFAULT_QUEUE)
        children += [
            Child(
                f"worker-{i}" if worker_processes > 1 else "worker",
                # The same name on each start (host, port, number): a new boot of a name tells the
                # sweeper that the turns of its earlier boot are lost (streams.workers).
                worker_argv(concurrency=settings.CELERY_WORKER_CONCURRENCY, name=f"mothership-{port}-{i}@%h", queues=[turns]),
            )
            for i in range(1, worker_processes + 1)
        ]
        background_processes = settings.MOTHERSHIP_BACKGROUND_WORKER_PROCESSES
        children += [
            Child(
                f"background-{i}" if background_processes > 1 else "background",
                worker_argv(
                    concurrency=settings.MOTHERSHIP_BACKGROUND_WORKER_CONCURRENCY,
                    name=f"mothership-background-{port}-{i}@%h",
                    queues=[background],
                ),
            )
            for i in range(1, background_processes + 1)
        ]
        children.append(Child("beat", beat_argv(schedule=settings.BASE_DIR / "var" / "celerybeat-schedule")))
        # Each child's heartbeat file, in a directory of this run's own (a second runall has its own).
        heartbeats = Path(tempfile.mkdtemp(prefix="mothership-heartbeats-"))
        for child in children:
            child.heartbeat = heartbeats / child.name
        self.line(
            f"processes: {web_processes} web, {worker_processes} worker ({settings.CELERY_WORKER_CONCURRENCY} turns each), "
            f"{background_processes} background worker ({settings.MOTHERSHIP_BACKGROUND_WORKER_CONCURRENCY} tasks each), 1 beat"
        )
        supervisor = Supervisor(
            children,
            colour=not options.get("no_color") and sys.stdout.isatty(),
            hang_seconds=settings.MOTHERSHIP_HANG_SECONDS,
            json_lines=settings.MOTHERSHIP_LOG_FORMAT == "json",
        )

        def _stop(signum, frame):
            supervisor.stopping.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        url = f"http://{host}:{port}/"
        self.line(
            f"Mothership on {url}"
            + (f"  login: {settings.MOTHERSHIP_DEMO_USERNAME} / {settings.MOTHERSHIP_DEMO_PASSWORD}" if seed else "")
        )
        self.line("an administrator for /admin/: python manage.py createsuperuser")

        def _embedded_redis_alive():
            # The embedded Redis is supervised like the children: restarted on its port, its data reloaded.
            if not embedded:
                return
            try:
                restarted = embedded_redis.restart_if_dead()
            except (OSError, RuntimeError) as exc:
                supervisor.say("redis", f"exited; could not restart it yet ({exc}); retrying")
                return
            if restarted is not None:
                supervisor.say("redis", f"exited; restarted (pid {restarted}), data reloaded from {embedded_redis.data_dir()}")

        code = supervisor.run(on_tick=_embedded_redis_alive)
        for sock in listeners:
            sock.close()
        embedded_redis.stop()
        shutil.rmtree(heartbeats, ignore_errors=True)
        self.line("all stopped")
        sys.exit(code)
