"""Mothership settings: every knob is read from the environment, with safe local defaults.

``.env.example`` lists every variable. With no ``DATABASE_URL`` the app uses a SQLite file;
with no ``REDIS_URL``, ``make run`` and the tests start the embedded redis-server (see
``mothership.embedded_redis``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from mothership import embedded_redis, processes
from mothership.infra import logs
from mothership.infra.attachment_storage import attachments_storage
from mothership.infra.llm_models import check_base_url, parse_llm_models
from mothership.infra.mcp.config import ConfigError as McpConfigError
from mothership.infra.mcp.config import parse_servers as parse_mcp_servers
from mothership.infra.proxies import parse_trusted_proxies

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def env_rate(name: str, default: str) -> str:
    """A rate as ``mothership.infra.rates`` reads it (DRF's notation): ``<count>/<sec|min|hour|day>``."""
    value = env_str(name, default)
    count, _, period = value.partition("/")
    if not (count.isdigit() and int(count) > 0 and period[:1] in ("s", "m", "h", "d")):
        raise ImproperlyConfigured(f"{name} must look like 30/min (a count per sec, min, hour or day), got {value!r}")
    return value


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {raw!r}")
    return value


# Off unless set: a deployment that forgets it is safe. ``make run`` (the laptop runner) and the
# test suite turn it on for themselves.
DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off (on a laptop, DJANGO_DEBUG=1 as `make run` sets it)."
        )
    SECRET_KEY = "mothership-local-development-key-not-for-production"

ALLOWED_HOSTS = [h.strip() for h in env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()]
if not DEBUG and "*" in ALLOWED_HOSTS:
    # Every Host header, and every WebSocket Origin (``null`` included), would be accepted.
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS=* is refused with DJANGO_DEBUG off: name the hosts the app is served on.")
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("DJANGO_CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

# The only peers whose X-Forwarded-For / X-Forwarded-Proto count (mothership/infra/proxies.py):
# for uvicorn (--forwarded-allow-ips), the sign-in limits and the logs alike. Default: none.
try:
    MOTHERSHIP_TRUSTED_PROXIES = parse_trusted_proxies(env_str("MOTHERSHIP_TRUSTED_PROXIES"))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None

# Behind a TLS-terminating proxy: secure cookies, HSTS, the redirect to HTTPS (not for the
# health check, which load balancers probe over HTTP). A request is HTTPS when a trusted proxy
# says so: uvicorn sets the scheme from its X-Forwarded-Proto (Django never reads the header,
# which any client could send).
MOTHERSHIP_HTTPS = env_bool("MOTHERSHIP_HTTPS", default=False)
if MOTHERSHIP_HTTPS:
    if not MOTHERSHIP_TRUSTED_PROXIES:
        raise ImproperlyConfigured(
            "MOTHERSHIP_HTTPS=1 needs MOTHERSHIP_TRUSTED_PROXIES: the TLS proxy's address (127.0.0.1 when it runs on "
            "this machine), the only peer whose X-Forwarded-Proto: https is believed."
        )
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("MOTHERSHIP_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("MOTHERSHIP_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env_bool("MOTHERSHIP_HSTS_PRELOAD", default=True)

# Mail: password reset is offered only when a mail server is configured.
EMAIL_HOST = env_str("DJANGO_EMAIL_HOST")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("DJANGO_EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("DJANGO_EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", default=True)
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "mothership@localhost")
MOTHERSHIP_PASSWORD_RESET = bool(EMAIL_HOST)

INSTALLED_APPS = [
    # First: its management commands take precedence over Django's (createsuperuser checks passwords).
    "mothership",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "axes",
    "drf_spectacular",
    "channels",
    "csp",
    "chats",
    "streams",
    "spend",
    "warming",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # the Content-Security-Policy of every response (below)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A form body past DATA_UPLOAD_MAX_MEMORY_SIZE: 413 and one line, before anything reads it.
    "mothership.infra.bodies.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mothership.infra.request_ids.RequestUserMiddleware",  # log lines say user_id once it is known
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Innermost and sync-only on purpose: the whole chain then runs synchronously in the
    # request's one thread. With an async-capable middleware inside a sync-only one, Django
    # hops between that thread and the event loop twice per middleware, and under load each
    # hop waits behind every socket the loop serves (docs/benchmarks.md, "One thread per request").
    # A locked-out sign-in's answer (django-axes); sync and async capable, so it runs in the
    # request's thread with the rest.
    "axes.middleware.AxesMiddleware",
    # Sign-in attempts per address, counted before the password is tried.
    "mothership.infra.login_limits.SignInRateMiddleware",
    "mothership.infra.api.DatabaseUnavailableMiddleware",
]

# --- Content-Security-Policy (django-csp) ----------------------------------------------------
# Every page's scripts, styles, images and sockets come from this site only: no inline script or
# style (the pages have none; replies' Markdown aligns table cells by class), no plugin, no frame
# of these pages anywhere else. A socket to this site is 'self' (CSP level 3).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

# --- Sign-in limits (mothership/infra/login_limits.py) ------------------------------------
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
MOTHERSHIP_LOGIN_FAILURE_LIMIT = env_int("MOTHERSHIP_LOGIN_FAILURE_LIMIT", 5, minimum=1)
MOTHERSHIP_LOGIN_LOCKOUT_SECONDS = env_int("MOTHERSHIP_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# Sign-in attempts per client address: the form, the admin's form and the token endpoint, one count.
MOTHERSHIP_LOGIN_RATE = env_rate("MOTHERSHIP_LOGIN_RATE", "20/min")
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"  # the Redis cache: one count for every process
AXES_FAILURE_LIMIT = MOTHERSHIP_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = MOTHERSHIP_LOGIN_LOCKOUT_SECONDS / 3600  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "mothership.infra.login_limits.locked_out"
AXES_VERBOSE = False
# The client address of mothership/infra/proxies.py: X-Forwarded-For only from a trusted proxy.
AXES_CLIENT_IP_CALLABLE = "mothership.infra.proxies.client_address"

ROOT_URLCONF = "mothership.urls"
ASGI_APPLICATION = "mothership.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "mothership.context_processors.theme",  # <html data-theme>: the person's light, dark or system
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
SQLITE_PATH = Path(env_str("MOTHERSHIP_SQLITE_PATH", str(BASE_DIR / "var" / "mothership.sqlite3")))
# PostgreSQL: a bounded pool per process (Django's psycopg pool). A thread holds a connection
# only while it queries (a request, a turn's claim and seal, never while the model writes), so
# (web + worker processes + beat) × this stays well under the server's max_connections (100
# by default) however many turns run. A request that finds the pool empty waits for
# MOTHERSHIP_DB_POOL_TIMEOUT seconds, then answers 503.
MOTHERSHIP_DB_POOL_SIZE = env_int("MOTHERSHIP_DB_POOL_SIZE", 8, minimum=1)
MOTHERSHIP_DB_POOL_TIMEOUT = env_float("MOTHERSHIP_DB_POOL_TIMEOUT", 10.0, minimum=0.1)
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": MOTHERSHIP_DB_POOL_SIZE,
            "timeout": MOTHERSHIP_DB_POOL_TIMEOUT,
            "max_idle": 60,
        }
else:
    SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(SQLITE_PATH)}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend with writers that queue for their turn (see mothership.infra.sqlite3).
    DATABASES["default"]["ENGINE"] = "mothership.infra.sqlite3"
    # Web, worker and beat write concurrently: WAL plus IMMEDIATE transactions avoid
    # "database is locked" on upgrade from read to write.
    # Each thread keeps its connection open (a SQLite connection is a file handle, not a server's
    # slot): opening one (its pragmas, Django's functions) cost ~1 ms per request, per socket query
    # and twice per turn. PostgreSQL instead hands connections back to its pool (above).
    DATABASES["default"]["CONN_MAX_AGE"] = None
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (not :memory:) so that test worker and server processes share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(SQLITE_PATH.with_name("test-" + SQLITE_PATH.name))}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: one server for the channel layer, cache, Celery, locks and logs --------------
# Importing the settings never starts a server (see mothership.embedded_redis).
REDIS_URL, REDIS_EMBEDDED = embedded_redis.settings_url()

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "mothership:cache",
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
    }
}

CHANNEL_LAYER_PREFIX = "mothership:asgi"
CHANNEL_LAYERS = {
    "default": {
        # channels-redis' pub/sub layer with a lean receiver (mothership.infra.pubsub).
        "BACKEND": "mothership.infra.pubsub.ChannelLayer",
        "CONFIG": {
            # redis-py 8 defaults socket_timeout to 5 s; a quiet subscriber must not drop.
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": CHANNEL_LAYER_PREFIX,
        },
    }
}

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
# Kombu's Redis transport with our parser: a Redis refusing writes is a lost connection, not a dead worker.
CELERY_BROKER_TRANSPORT = "mothership.infra.broker:Transport"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Two queues: turns on this one, everything else (warms, the warming dispatcher, the sweeper) on
# "<this>.background" (mothership.celery.route_task), each with workers of its own, so that a
# backlog of warms never delays a turn and a pool full of turns never delays a sweep.
CELERY_TASK_DEFAULT_QUEUE = env_str("MOTHERSHIP_CELERY_QUEUE", "mothership")
CELERY_TASK_ROUTES = ("mothership.celery.route_task",)
# A worker takes a task only when it has a thread free for it: a waiting turn stays in the queue
# (where its worker-side keeper renews its lock, streams.queue) instead of in a busy worker's memory.
CELERY_WORKER_DISABLE_PREFETCH = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = False  # a lost stream task is finalized by the sweeper, never replayed
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A broker connection lost leaves running turns alone (they ride out a Redis outage); said here so
# Celery does not warn about its future default at every reconnect.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# One line per broker outage instead of a traceback per due task (mothership/celery.py).
CELERY_BEAT_SCHEDULER = "mothership.celery:Scheduler"
CELERY_WORKER_CONCURRENCY = env_int("MOTHERSHIP_WORKER_CONCURRENCY", 100, minimum=1)  # turns per worker process
# Celery's own defaults, said here because Celery reads them at every publish: a setting missing
# here is looked for in every layer of its configuration (~40 µs each, against ~10 for one found).
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_REPR_MAXLEVELS = 3
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_BROKER_POOL_ACQUIRE_TIMEOUT = None

# --- Processes (``manage.py runall``, i.e. ``make run``) ----------------------------------
# HTTP requests a web process runs at once (mothership.infra.concurrency); the rest queue.
MOTHERSHIP_WEB_REQUEST_CONCURRENCY = env_int("MOTHERSHIP_WEB_REQUEST_CONCURRENCY", 8, minimum=1)
MOTHERSHIP_WEB_PROCESSES = env_int("WEB_CONCURRENCY", processes.cores(), minimum=1)
MOTHERSHIP_WORKER_PROCESSES = env_int("MOTHERSHIP_WORKER_PROCESSES", processes.cores(), minimum=1)
# Workers of the background queue (warms, dispatch, sweeps), and the tasks each runs at once.
MOTHERSHIP_BACKGROUND_WORKER_PROCESSES = env_int("MOTHERSHIP_BACKGROUND_WORKER_PROCESSES", 1, minimum=1)
MOTHERSHIP_BACKGROUND_WORKER_CONCURRENCY = env_int("MOTHERSHIP_BACKGROUND_WORKER_CONCURRENCY", 16, minimum=1)
CELERY_BEAT_SCHEDULE: dict = {}  # filled in mothership/celery.py, the one place schedules live

# --- Readiness (``GET /readyz``, mothership/infra/readiness.py) --------------------------
# Each worker process writes its heartbeat to Redis this often, and beat at least this often as it
# ticks (mothership/infra/heartbeats.py); /readyz says "workers" or "beat" is not ok once the
# newest beat is older than its threshold, and gives up on the database or Redis after the timeout.
MOTHERSHIP_READY_HEARTBEAT = env_float("MOTHERSHIP_READY_HEARTBEAT", 5.0, minimum=0.1)
MOTHERSHIP_READY_WORKER_SECONDS = env_float("MOTHERSHIP_READY_WORKER_SECONDS", 30.0, minimum=0.2)
MOTHERSHIP_READY_BEAT_SECONDS = env_float("MOTHERSHIP_READY_BEAT_SECONDS", 30.0, minimum=0.2)
MOTHERSHIP_READY_TIMEOUT = env_float("MOTHERSHIP_READY_TIMEOUT", 1.5, minimum=0.1)
if min(MOTHERSHIP_READY_WORKER_SECONDS, MOTHERSHIP_READY_BEAT_SECONDS) <= MOTHERSHIP_READY_HEARTBEAT:
    raise ImproperlyConfigured(
        "MOTHERSHIP_READY_WORKER_SECONDS and MOTHERSHIP_READY_BEAT_SECONDS must be longer than MOTHERSHIP_READY_HEARTBEAT "
        "(a live process beats that often)."
    )

# --- Metrics (GET /metrics; mothership/infra/metrics.py, docs/operations.md) --------------
# 0: nothing is counted and /metrics answers 404 (bench/metrics.py measures the difference).
MOTHERSHIP_METRICS = env_bool("MOTHERSHIP_METRICS", True)
# Set: /metrics wants "Authorization: Bearer <this>"; unset: it answers loopback clients only.
MOTHERSHIP_METRICS_TOKEN = env_str("MOTHERSHIP_METRICS_TOKEN")
# How often each process adds its counts to the totals in Redis (one pipeline each time).
MOTHERSHIP_METRICS_FLUSH_SECONDS = env_float("MOTHERSHIP_METRICS_FLUSH_SECONDS", 1.0, minimum=0.05)

# --- Streams (liveness, event log) ----------------------------------------------------
MOTHERSHIP_STREAM_LOCK_TTL = env_float("MOTHERSHIP_STREAM_LOCK_TTL", 60.0, minimum=0.5)
MOTHERSHIP_STREAM_HEARTBEAT = env_float("MOTHERSHIP_STREAM_HEARTBEAT", 20.0, minimum=0.1)
if MOTHERSHIP_STREAM_HEARTBEAT >= MOTHERSHIP_STREAM_LOCK_TTL:
    raise ImproperlyConfigured("MOTHERSHIP_STREAM_HEARTBEAT must be shorter than MOTHERSHIP_STREAM_LOCK_TTL.")
MOTHERSHIP_SWEEP_INTERVAL = env_float("MOTHERSHIP_SWEEP_INTERVAL", 5.0, minimum=0.1)
# Each turn worker process renews a key of its own this often (streams.workers); three missed
# beats and its turns are sealed by the sweeper without waiting for their locks to expire.
MOTHERSHIP_WORKER_HEARTBEAT = env_float("MOTHERSHIP_WORKER_HEARTBEAT", 2.0, minimum=0.1)
# A streaming tile says "stalled" once its stream has sent no event for this long (worker alive).
MOTHERSHIP_STALL_SECONDS = env_float("MOTHERSHIP_STALL_SECONDS", 30.0, minimum=1.0)
MOTHERSHIP_CANCEL_SETTLE_TIMEOUT = env_float("MOTHERSHIP_CANCEL_SETTLE_TIMEOUT", 5.0, minimum=0.1)
# A deleted chat stays in the trash, restorable, this many days; then the beat purges it.
MOTHERSHIP_TRASH_DAYS = env_int("MOTHERSHIP_TRASH_DAYS", 30, minimum=1)
MOTHERSHIP_TRASH_PURGE_INTERVAL = env_float("MOTHERSHIP_TRASH_PURGE_INTERVAL", 3600.0, minimum=1.0)
# The largest file an import takes (POST /api/mothership/workspaces/<id>/import), bytes: past it, 413.
MOTHERSHIP_IMPORT_MAX_BYTES = env_int("MOTHERSHIP_IMPORT_MAX_BYTES", 20 * 1024 * 1024, minimum=1)
# Attachments (chats.attachments, docs/attachments.md): the largest file (past it, 413 before the
# body is stored), what one user may keep (bytes and files, over every chat; past it, 413), files
# per message, and what a model reads of a text file or a PDF (characters; the rest is cut).
MOTHERSHIP_ATTACHMENT_MAX_BYTES = env_int("MOTHERSHIP_ATTACHMENT_MAX_BYTES", 20 * 1024 * 1024, minimum=1)
MOTHERSHIP_ATTACHMENT_QUOTA_BYTES = env_int("MOTHERSHIP_ATTACHMENT_QUOTA_BYTES", 1024 * 1024 * 1024, minimum=1)
MOTHERSHIP_ATTACHMENT_QUOTA_FILES = env_int("MOTHERSHIP_ATTACHMENT_QUOTA_FILES", 5000, minimum=1)
MOTHERSHIP_ATTACHMENTS_PER_MESSAGE = env_int("MOTHERSHIP_ATTACHMENTS_PER_MESSAGE", 10, minimum=1)
MOTHERSHIP_ATTACHMENT_TEXT_CHARS = env_int("MOTHERSHIP_ATTACHMENT_TEXT_CHARS", 200_000, minimum=1)
# An image larger than this many pixels is refused (a decompression bomb is a few KB).
MOTHERSHIP_ATTACHMENT_MAX_PIXELS = env_int("MOTHERSHIP_ATTACHMENT_MAX_PIXELS", 50_000_000, minimum=1)
# Uploads no message named within this many hours are deleted (with their bytes) by the beat's purge.
MOTHERSHIP_ATTACHMENT_UNSENT_HOURS = env_float("MOTHERSHIP_ATTACHMENT_UNSENT_HOURS", 24.0, minimum=0.01)
# Where the bytes live: a folder (default: beside the SQLite database, var/attachments), or an
# S3-compatible bucket when MOTHERSHIP_ATTACHMENT_S3_BUCKET is set (AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY, or the machine's role, as boto3 finds them).
MOTHERSHIP_ATTACHMENT_DIR = Path(env_str("MOTHERSHIP_ATTACHMENT_DIR") or str(SQLITE_PATH.parent / "attachments"))
MOTHERSHIP_ATTACHMENT_S3_BUCKET = env_str("MOTHERSHIP_ATTACHMENT_S3_BUCKET")
MOTHERSHIP_ATTACHMENT_S3_ENDPOINT_URL = env_str("MOTHERSHIP_ATTACHMENT_S3_ENDPOINT_URL")
MOTHERSHIP_ATTACHMENT_S3_REGION = env_str("MOTHERSHIP_ATTACHMENT_S3_REGION")
# (The prefix defaults to "attachments"; an endpoint, region or prefix without a bucket stops the app at start.)
MOTHERSHIP_ATTACHMENT_S3_PREFIX = env_str("MOTHERSHIP_ATTACHMENT_S3_PREFIX")
# Share links (``/s/<token>``) a user may have active at once; one more answers 409 until one is revoked.
MOTHERSHIP_SHARES_PER_USER = env_int("MOTHERSHIP_SHARES_PER_USER", 100, minimum=1)
# The frame clock's tick (streams.frames): 40 ms is 25 frames a second, smooth to the eye, and
# cut the worker's CPU per turn by half against 15 ms (docs/benchmarks.md).
MOTHERSHIP_DELTA_FLUSH_MS = env_float("MOTHERSHIP_DELTA_FLUSH_MS", 40.0, minimum=0.0)
MOTHERSHIP_EVENT_LOG_TTL = env_float("MOTHERSHIP_EVENT_LOG_TTL", 600.0, minimum=1.0)
# Messages a socket may send: a sustained rate and a burst (a page sends a few per chat it opens,
# and its resumes after a reconnect). Past it, each message gets the error frame ``rate_limited``.
MOTHERSHIP_WS_MESSAGES_PER_SECOND = env_float("MOTHERSHIP_WS_MESSAGES_PER_SECOND", 20.0, minimum=0.1)
MOTHERSHIP_WS_MESSAGE_BURST = env_int("MOTHERSHIP_WS_MESSAGE_BURST", 100, minimum=1)
# Output a socket's client has not read yet, in bytes, past which the server closes it with 4008
# (mothership/infra/wsprotocol.py); the page reconnects and resumes after its last seq.
# runall kills and restarts a child whose heartbeat file is older than this (mothership/infra/alive.py).
MOTHERSHIP_HANG_SECONDS = env_float("MOTHERSHIP_HANG_SECONDS", 10.0, minimum=1.0)
MOTHERSHIP_WS_SEND_BUFFER_BYTES = env_int("MOTHERSHIP_WS_SEND_BUFFER_BYTES", 256 * 1024, minimum=1024)
# Per user, in every process at once (mothership/infra/throttles.py, exact counts in Redis):
# messages sent, warming changes, warms asked for by hand, chats created (API and page), and
# turns running at the same time.
MOTHERSHIP_SEND_RATE = env_rate("MOTHERSHIP_SEND_RATE", "60/min")
MOTHERSHIP_WARMING_CHANGE_RATE = env_rate("MOTHERSHIP_WARMING_CHANGE_RATE", "60/min")
MOTHERSHIP_WARM_NOW_RATE = env_rate("MOTHERSHIP_WARM_NOW_RATE", "10/min")
MOTHERSHIP_CHAT_CREATE_RATE = env_rate("MOTHERSHIP_CHAT_CREATE_RATE", "30/min")
# Share links made (each a copy of the conversation).
MOTHERSHIP_SHARE_RATE = env_rate("MOTHERSHIP_SHARE_RATE", "30/min")
# Files one user may upload (each is sniffed, maybe re-encoded, and stored).
MOTHERSHIP_UPLOAD_RATE = env_rate("MOTHERSHIP_UPLOAD_RATE", "120/min")
# Imports one user may start (each parses a whole file of up to MOTHERSHIP_IMPORT_MAX_BYTES).
MOTHERSHIP_IMPORT_RATE = env_rate("MOTHERSHIP_IMPORT_RATE", "20/hour")
# Tool calls a member's turns may make (every model's call counts, made or refused past it).
MOTHERSHIP_TOOL_CALL_RATE = env_rate("MOTHERSHIP_TOOL_CALL_RATE", "120/min")
# ``/ws/?token=<API token>``: off, since proxies log URLs; API clients use a socket ticket
# (``POST /api/auth/ws-ticket``). On only for old clients.
MOTHERSHIP_WS_TOKEN_IN_URL = env_bool("MOTHERSHIP_WS_TOKEN_IN_URL", False)
# Every socket checks again, this often, that its user is active, its session or API token alive
# and its subscriptions still the user's (one query): a change that sent no signal (QuerySet.update,
# a raw DELETE, another program) closes it within this period (mothership/access.py).
MOTHERSHIP_SOCKET_RECHECK_SECONDS = env_float("MOTHERSHIP_SOCKET_RECHECK_SECONDS", 30.0, minimum=0.1)
MOTHERSHIP_MAX_CONCURRENT_TURNS = env_int("MOTHERSHIP_MAX_CONCURRENT_TURNS", 10, minimum=1)

# --- Warming --------------------------------------------------------------------------
MOTHERSHIP_WARMING_TICK = env_float("MOTHERSHIP_WARMING_TICK", 1.0, minimum=0.1)
MOTHERSHIP_WARMING_MIN_INTERVAL = env_int("MOTHERSHIP_WARMING_MIN_INTERVAL", 30, minimum=1)
MOTHERSHIP_WARMING_MAX_INTERVAL = env_int("MOTHERSHIP_WARMING_MAX_INTERVAL", 3300, minimum=1)
MOTHERSHIP_WARMING_DEFAULT_INTERVAL = env_int("MOTHERSHIP_WARMING_DEFAULT_INTERVAL", 240, minimum=1)
MOTHERSHIP_WARMING_BATCH = env_int("MOTHERSHIP_WARMING_BATCH", 100, minimum=1)  # schedules per Celery message
MOTHERSHIP_WARMING_IDLE_LIMIT = env_float("MOTHERSHIP_WARMING_IDLE_LIMIT", 3600.0, minimum=1.0)  # stop after this idle
MOTHERSHIP_WARMING_MAX_FAILURES = env_int("MOTHERSHIP_WARMING_MAX_FAILURES", 3, minimum=1)
# The provider's prompt-cache lifetime (Anthropic: 5 minutes, refreshed by each read).
MOTHERSHIP_PROMPT_CACHE_TTL = env_float("MOTHERSHIP_PROMPT_CACHE_TTL", 300.0, minimum=1.0)
# USD per million tokens. ``default`` applies to models not listed. Override with a JSON object
# in MOTHERSHIP_PRICES_JSON (same shape). Defaults: Anthropic Sonnet-class list prices, where a
# cache read costs 0.1x and a cache write 1.25x of plain input.
MOTHERSHIP_PRICES = {"default": {"input": 3.0, "cache_read": 0.30, "cache_write": 3.75, "output": 15.0}}
if os.environ.get("MOTHERSHIP_PRICES_JSON"):
    try:
        MOTHERSHIP_PRICES.update(json.loads(os.environ["MOTHERSHIP_PRICES_JSON"]))
    except ValueError as exc:
        raise ImproperlyConfigured(f"MOTHERSHIP_PRICES_JSON is not valid JSON: {exc}") from None

# --- Models ---------------------------------------------------------------------------
LLM_PROVIDERS = ("local", "anthropic", "openai")
LLM_PROVIDER = env_str("LLM_PROVIDER", "local")
if LLM_PROVIDER not in LLM_PROVIDERS:
    raise ImproperlyConfigured(f"LLM_PROVIDER must be one of: {', '.join(LLM_PROVIDERS)} (got {LLM_PROVIDER!r}).")
LLM_MODEL = env_str("LLM_MODEL", "mothership-local-1" if LLM_PROVIDER == "local" else "")
LLM_TIMEOUT = env_float("LLM_TIMEOUT", 60.0, minimum=1.0)  # seconds to connect / between chunks
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2, minimum=0)  # only before the first delta
LLM_MAX_TOKENS = env_int("LLM_MAX_TOKENS", 4096, minimum=1)  # a reply's limit (anthropic requires one)
# Anthropic's Messages API through the anthropic SDK.
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL", "")
# OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp server) through the openai SDK.
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")
# Several models side by side (mothership/infra/llm_models.py); when set, LLM_PROVIDER / LLM_MODEL
# and the keys above are not the shorthand for one model any more, only defaults its entries use.
try:
    LLM_MODELS = parse_llm_models(env_str("LLM_MODELS", ""), os.environ, max_tokens=LLM_MAX_TOKENS)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
if LLM_PROVIDER != "local" and not LLM_MODELS:
    # Fail at start, not mid-stream.
    if not LLM_MODEL:
        raise ImproperlyConfigured(f"LLM_MODEL must name the model when LLM_PROVIDER={LLM_PROVIDER}.")
    if LLM_PROVIDER == "anthropic" and not ANTHROPIC_API_KEY:
        raise ImproperlyConfigured("ANTHROPIC_API_KEY must be set when LLM_PROVIDER=anthropic.")
    if LLM_PROVIDER == "openai" and not OPENAI_API_KEY:
        raise ImproperlyConfigured(
            "OPENAI_API_KEY must be set when LLM_PROVIDER=openai (any value for a local server that does not check it)."
        )
    _base_url = {"anthropic": ANTHROPIC_BASE_URL, "openai": OPENAI_BASE_URL}[LLM_PROVIDER]  # only the chosen one's
    if _base_url:
        try:
            check_base_url(_base_url, provider=LLM_PROVIDER, where=f"{LLM_PROVIDER.upper()}_BASE_URL")
        except ValueError as exc:
            raise ImproperlyConfigured(str(exc)) from None
MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = env_float("MOTHERSHIP_LOCAL_TOKENS_PER_SECOND", 30.0, minimum=0.0)
MOTHERSHIP_LOCAL_REPLY_TOKENS = env_int("MOTHERSHIP_LOCAL_REPLY_TOKENS", 200, minimum=1)
# The local model caches a prefix only from this size on (like a provider's minimum cacheable size).
MOTHERSHIP_LOCAL_CACHE_MIN_TOKENS = env_int("MOTHERSHIP_LOCAL_CACHE_MIN_TOKENS", 0, minimum=0)

# --- Demo -----------------------------------------------------------------------------
MOTHERSHIP_DEMO_USERNAME = env_str("MOTHERSHIP_DEMO_USERNAME", "demo")
MOTHERSHIP_DEMO_PASSWORD = env_str("MOTHERSHIP_DEMO_PASSWORD", "demo")
MOTHERSHIP_DEMO_WORKSPACE = env_str("MOTHERSHIP_DEMO_WORKSPACE", "Demo")

# --- Tools (MCP servers; mothership/infra/mcp) ---------------------------------------------
# A JSON list of servers the worker may call; a wrong entry stops the app here, naming it.
try:
    MCP_SERVERS = parse_mcp_servers(env_str("MCP_SERVERS", ""))
except McpConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None
MOTHERSHIP_MAX_TOOL_ROUNDS = env_int("MOTHERSHIP_MAX_TOOL_ROUNDS", 20, minimum=1)  # rounds of tool calls per turn

# --- Auth, API ------------------------------------------------------------------------
# Every password a person sets (sign-up forms, the admin, changepassword, createsuperuser, its
# --noinput form too: mothership/management/commands/createsuperuser.py) is checked by these.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "mothership.authentication.TokenAuthentication",  # named tokens (msk_…) and DRF's
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "mothership.infra.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mothership.infra.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Mothership API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Two enums share the field name "role": a message's and a membership's, each named here.
    "ENUM_NAME_OVERRIDES": {
        "MessageRoleEnum": "chats.models.Message.Role",
        "MembershipRoleEnum": "chats.models.Membership.Role",
    },
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "mothership.infra.schema.add_error_responses"],
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("MOTHERSHIP_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Static files are served by the web processes through WhiteNoise, with cache headers: with
# DEBUG off, the compressed copies (gzip) that ``collectstatic`` made (``runall`` runs it at
# start); with DEBUG on, straight from the source folders (always the current files).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    # Attachments (chats.attachments.storage): never served by URL from the storage itself, only
    # through the members-only views, so the folder is outside STATIC_ROOT and MEDIA_ROOT.
    "attachments": attachments_storage(
        bucket=MOTHERSHIP_ATTACHMENT_S3_BUCKET,
        endpoint_url=MOTHERSHIP_ATTACHMENT_S3_ENDPOINT_URL,
        region=MOTHERSHIP_ATTACHMENT_S3_REGION,
        prefix=MOTHERSHIP_ATTACHMENT_S3_PREFIX or None,
        directory=str(MOTHERSHIP_ATTACHMENT_DIR),
    ),
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_MAX_AGE = env_int("MOTHERSHIP_STATIC_MAX_AGE", 3600, minimum=0)

_RUNALL = sys.argv[1:2] == ["runall"]  # this process is `manage.py runall` (`make run`)
# text: "LEVEL logger: message"; json: one object per line (mothership/infra/logs.py, docs/operations.md, "Logs").
MOTHERSHIP_LOG_FORMAT = env_str("MOTHERSHIP_LOG_FORMAT", "text").lower()
if MOTHERSHIP_LOG_FORMAT not in logs.FORMATS:
    raise ImproperlyConfigured(f"MOTHERSHIP_LOG_FORMAT must be one of {', '.join(logs.FORMATS)}, got {MOTHERSHIP_LOG_FORMAT!r}")
MOTHERSHIP_LOG_LEVEL = env_str("MOTHERSHIP_LOG_LEVEL", "INFO").upper()
if MOTHERSHIP_LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(
        f"MOTHERSHIP_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {MOTHERSHIP_LOG_LEVEL!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line with secrets masked (mothership/infra/secrets.py): a provider's or a tool server's words, a traceback.
    # runall's own lines (the embedded Redis's warnings) carry the time, as its children's do: the
    # supervisor puts it before each line they print.
    "formatters": {
        "app": logs.formatter_config(
            MOTHERSHIP_LOG_FORMAT, timed=_RUNALL, process_name=env_str(logs.PROCESS_NAME_ENV, "runall" if _RUNALL else "")
        )
    },
    "filters": {
        "context": {"()": "mothership.infra.logs.ContextFilter"},
        "user": {"()": "mothership.infra.request_ids.RequestUserFilter"},
        "server_lines": {"()": "mothership.infra.logs.ServerLineFilter"},
        # Beat's every-second ticks: no "received" / "succeeded" pair each time (their failures show).
        "quiet_ticks": {"()": "mothership.infra.logs.QuietTasksFilter", "tasks": ["streams.sweep", "warming.dispatch"]},
    },
    # One handler, on the root only: every logger's line goes out once (Celery's and uvicorn's are
    # routed here too: mothership.celery, mothership.infra.logs.adopt_server_loggers).
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "app", "filters": ["server_lines", "context", "user"]}
    },
    "root": {"handlers": ["console"], "level": MOTHERSHIP_LOG_LEVEL},
    # SQL with its parameters (a session key, a token's digest) stays out even at DEBUG.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery.app.trace": {"filters": ["quiet_ticks"]},
        "celery.worker.strategy": {"filters": ["quiet_ticks"]},
    },
}
