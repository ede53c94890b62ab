"""The log: its two formats, the context every line carries, and what never reaches it.

``MOTHERSHIP_LOG_FORMAT=text`` (the default) writes ``LEVEL logger: message``;
``MOTHERSHIP_LOG_FORMAT=json`` writes one JSON object per line (python-json-logger) with
``time``, ``level``, ``logger``, ``message`` and, where known, ``request_id``, ``user_id``,
``chat_id`` and ``stream_id``. Those four come from one context variable that the request's
middleware (``mothership.infra.request_ids``), the socket consumer (per message) and the Celery
turn task (around a turn) set with ``log_context``, and ``ContextFilter`` copies onto each record.

Every line, in either format, passes ``mothership.infra.secrets.mask`` (configured secrets by value,
key-shaped tokens by shape): a last line of defence. The sources are fixed too: the web server's
lines (uvicorn's handshake and access lines, the ``websockets`` library's debug dump of a handshake)
lose their query strings' values and their credential headers here (``ServerLineFilter``), before
formatting.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import re
from collections.abc import Iterator
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from mothership.infra.secrets import MaskingFormatter, mask

FORMATS = ("text", "json")
CONTEXT_FIELDS = ("request_id", "user_id", "chat_id", "stream_id")
# A redacted value: a query parameter's or a header's.
REDACTED = "…"

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("mothership_log_context", default={})  # noqa: B039 (never mutated: replaced)


def current() -> dict[str, Any]:
    """The log context of this task or thread (never mutate it)."""
    return _context.get()


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Log lines inside carry ``fields`` (``None`` values are left out); on exit the context is as
    it was, including whatever ``bind`` added inside (a pool thread's next task starts clean)."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def start(**fields: Any) -> None:
    """This thread's context from now on is ``fields`` alone (a Celery task's, at its start)."""
    _context.set({k: str(v) for k, v in fields.items() if v is not None})


def bind(**fields: Any) -> None:
    """Add ``fields`` to the context until the enclosing ``log_context`` (or the task) ends."""
    _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})


class ContextFilter(logging.Filter):
    """Copies the log context onto each record (a field the call gave in ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# --- the web server's lines ------------------------------------------------------------------

_QUERY_VALUE = re.compile(r"=[^&#\s]*")
# Headers the websockets library dumps at debug level, whose values are credentials.
_CREDENTIAL_HEADERS = frozenset({"cookie", "set-cookie", "authorization", "proxy-authorization", "sec-websocket-protocol"})


def redact_path(path: str) -> str:
    """``/ws/?token=abc&x=1`` → ``/ws/?token=…&x=…``: the parameters' names stay, their values go."""
    head, sep, query = path.partition("?")
    return head + sep + _QUERY_VALUE.sub("=" + REDACTED, query) if sep else path


def _redacted_args(msg: str, args: tuple) -> tuple | None:
    # uvicorn's access line: client, method, path with query, HTTP version, status.
    if msg.startswith('%s - "%s %s HTTP/%s"') and len(args) >= 3:
        return (*args[:2], redact_path(str(args[2])), *args[3:])
    # uvicorn's handshake lines: '%s - "WebSocket %s" [accepted]' / 403 / a status.
    if msg.startswith('%s - "WebSocket %s"') and len(args) >= 2:
        return (args[0], redact_path(str(args[1])), *args[2:])
    # websockets' debug dump of a handshake: "< GET %s HTTP/1.1", then "< %s: %s" / "> %s: %s".
    if msg.startswith("< GET %s") and args:
        return (redact_path(str(args[0])), *args[1:])
    if msg in ("< %s: %s", "> %s: %s") and len(args) == 2 and str(args[0]).lower() in _CREDENTIAL_HEADERS:
        return (args[0], REDACTED)
    return None


class QuietTasksFilter(logging.Filter):
    """Drops Celery's "Task … received" and "… succeeded" lines (INFO, ``record.data["name"]``) of
    the tasks named: beat's ticks run every second or so and would write two lines each time. Their
    failures (WARNING and above) still show, and so do every other task's lines."""

    def __init__(self, tasks: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        data = getattr(record, "data", None)
        return not (isinstance(data, dict) and data.get("name") in self.tasks)


class ServerLineFilter(logging.Filter):
    """uvicorn's lines (and the websockets library's, which uvicorn gives its logger) without
    query-string values or credential headers: an old client's ``/ws/?token=…``, a socket ticket,
    a session cookie never reach the log. uvicorn's ``color_message`` copy of the line is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and isinstance(record.args, tuple) and isinstance(record.msg, str):
            redacted = _redacted_args(record.msg, record.args)
            if redacted is not None:
                record.args = redacted
            record.__dict__.pop("color_message", None)
        return True


def adopt_server_loggers() -> None:
    """The web server's loggers write through the app's handlers (its format, its filters), at the
    app's level. An access log that uvicorn was told to leave off (``--no-access-log``, which
    leaves it without handlers) stays off."""
    root = logging.getLogger()
    for name in ("uvicorn", "uvicorn.access"):
        logger = logging.getLogger(name)
        if name == "uvicorn.access" and not logger.handlers:
            continue
        logger.handlers = list(root.handlers)
        logger.propagate = False  # its lines go out once, through those handlers
        logger.setLevel(root.level)
    logging.getLogger("uvicorn.error").setLevel(logging.NOTSET)  # uvicorn's own INFO would hide its debug lines


# --- formatters ------------------------------------------------------------------------------

PROCESS_NAME_ENV = "MOTHERSHIP_PROCESS_NAME"  # runall names each child so (web-1, worker, beat)


class TextFormatter(MaskingFormatter):
    """``MOTHERSHIP_LOG_FORMAT=text``: the format of old, secrets masked."""


class JsonFormatter(_LibraryJsonFormatter):
    """``MOTHERSHIP_LOG_FORMAT=json``: one object per line, with the named fields only (a record's
    other attributes, such as Django's ``request`` with its query string, never reach the line).
    ``process_name``: which of ``runall``'s processes writes it (``web-1``, ``worker``, ``beat``)."""

    def __init__(self, *args: Any, process_name: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.process_name = process_name

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat()
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = mask(record.message)
        process = getattr(record, "process_name", None) or self.process_name
        if process:
            log_data["process"] = process
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                log_data[key] = str(value)
        for key in ("exc_info", "stack_info"):
            if message_dict.get(key):
                log_data[key] = mask(str(message_dict[key]))


def formatter_config(log_format: str, *, timed: bool, process_name: str = "") -> dict[str, Any]:
    """The ``LOGGING`` formatter for ``MOTHERSHIP_LOG_FORMAT`` (``timed``: text lines start with the time)."""
    if log_format == "json":
        return {"()": "mothership.infra.logs.JsonFormatter", "process_name": process_name}
    return {
        "class": "mothership.infra.logs.TextFormatter",
        "format": ("%(asctime)s.%(msecs)03d " if timed else "") + "%(levelname)s %(name)s: %(message)s",
        "datefmt": "%H:%M:%S",
    }


RUNALL_LOGGER = "mothership.runall"  # the supervisor's own lines
PRINTED_LOGGER = "mothership.runall.printed"  # what a child printed that is no log line (Celery's banner, a crash)


def json_line(process_name: str, text: str, *, logger: str = RUNALL_LOGGER) -> str:
    """One line that is not a log record (``runall``'s own, a child's line that is not JSON: a
    crash's last words before its logging was set up) as a JSON log line."""
    record = logging.LogRecord(logger, logging.INFO, __file__, 0, text, None, None)
    record.process_name = process_name
    return _runall_formatter.format(record)


_runall_formatter = JsonFormatter()
