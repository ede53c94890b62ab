"""The log: JSON lines with their context, the request id, the web server's lines without
credentials, and a form body past the limit answered 413 in one line. Over real processes (every
line of a whole session, grepped for its secrets): ``tests/e2e/test_logs.py``."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import uuid

import pytest
from channels.testing import HttpCommunicator
from channels.testing.websocket import WebsocketCommunicator
from django.test import Client

from mothership.consumers import MothershipConsumer
from mothership.infra import logs
from mothership.infra.request_ids import MAX_CHARS, request_id_from
from tests.support.processes import ROOT

CHAT = str(uuid.uuid4())


@pytest.fixture
def console():
    """The app's own console handler (``settings.LOGGING``, its filters included) writing JSON
    lines into a buffer, the root at DEBUG; yields a function that returns the lines parsed."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    stream = io.StringIO()
    saved_stream, saved_formatter = handler.setStream(stream), handler.formatter
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    saved_level = root.level
    root.setLevel(logging.DEBUG)
    logs.start()  # whatever an earlier test ran inline in this thread (a turn: stream_run binds its chat) is gone
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.setLevel(saved_level)
    handler.setStream(saved_stream)
    handler.setFormatter(saved_formatter)


# --- JSON lines and their context ----------------------------------------------------------------


def test_a_json_line_carries_the_context_it_was_written_in_and_only_the_named_fields(console):
    log = logging.getLogger("mothership.test")
    with logs.log_context(request_id="req-1", chat_id=CHAT, stream_id=None):
        # Django's records carry the request (its repr has the query string): it never reaches the line.
        log.warning("turn %s started", "t1", extra={"request": "<ASGIRequest: GET '/x?token=abc'>"})
        logs.bind(stream_id="s-1")  # as stream_run does once the stream is claimed
        log.info("inside")
    log.info("after")

    first, inside, after = console()
    assert set(first) == {"time", "level", "logger", "message", "request_id", "chat_id"}, first
    assert (first["level"], first["logger"], first["message"], first["request_id"], first["chat_id"]) == (
        "WARNING",
        "mothership.test",
        "turn t1 started",
        "req-1",
        CHAT,
    )
    assert first["time"].endswith("+00:00")
    assert inside["stream_id"] == "s-1"
    # The context is as it was before: a pool thread's next task starts without this one's ids.
    assert set(after) == {"time", "level", "logger", "message"}, after


def test_a_json_lines_message_and_traceback_are_masked(console):
    try:
        raise RuntimeError("the server refused msk_AbCdEf0123456789ghijkl")
    except RuntimeError:
        logging.getLogger("mothership.test").exception("GET /ws/?ticket=T0pS3cret-ticket-value failed")
    (line,) = console()
    assert line["message"] == "GET /ws/?ticket=… failed"
    assert "Traceback" in line["exc_info"] and "msk_…" in line["exc_info"] and "AbCdEf" not in line["exc_info"]


SHAPES = [
    ("named token msk_Zx8-_Yw7Vv6Uu5Tt4Ss3Rr2Qq1Pp0Oo9Nn8Mm7Ll6Kk", "named token msk_…"),
    ("Cookie: sessionid=3zq8w0v1x2y3z4a5b6c7d8e9f0g1h2i3; csrftoken=Qx9", "Cookie: sessionid=…; csrftoken=…"),
    ("/ws/?ticket=abc-DEF_123", "/ws/?ticket=…"),
    ("DRF token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b", "DRF token …"),
    ("the token expired", "the token expired"),  # words stay words
]


@pytest.mark.parametrize(("said", "shown"), SHAPES)
def test_the_last_line_of_defence_masks_this_apps_credentials_by_shape(said, shown):
    from mothership.infra.secrets import mask

    assert mask(said) == shown


# --- the web server's lines ------------------------------------------------------------------------

SERVER_LINES = [
    # uvicorn's handshake lines (its sans-I/O websockets protocol), access line, and the websockets
    # library's debug dump of a handshake (uvicorn gives it the "uvicorn.error" logger).
    (
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/ws/?token=9944b09199c62bcf"),
        '127.0.0.1:5 - "WebSocket /ws/?token=…" [accepted]',
    ),
    ('%s - "WebSocket %s" 403', ("127.0.0.1:5", "/ws/?ticket=abc&v=2"), '127.0.0.1:5 - "WebSocket /ws/?ticket=…&v=…" 403'),
    (
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:9", "GET", "/chats?q=my+secret", "1.1", 200),
        '1.2.3.4:9 - "GET /chats?q=… HTTP/1.1" 200',
    ),
    ("< GET %s HTTP/1.1", ("/ws/?ticket=abc",), "< GET /ws/?ticket=… HTTP/1.1"),
    ("< %s: %s", ("Cookie", "sessionid=abc; csrftoken=def"), "< Cookie: …"),
    ("< %s: %s", ("Authorization", "Token abc"), "< Authorization: …"),
    ("> %s: %s", ("Set-Cookie", "sessionid=abc"), "> Set-Cookie: …"),
    ("< %s: %s", ("Host", "example.org"), "< Host: example.org"),
    ('%s - "WebSocket %s" [accepted]', ("127.0.0.1:5", "/ws/"), '127.0.0.1:5 - "WebSocket /ws/" [accepted]'),
]


@pytest.mark.parametrize(("msg", "args", "shown"), SERVER_LINES)
def test_the_web_servers_lines_lose_query_values_and_credential_headers(console, msg, args, shown):
    logging.getLogger("uvicorn.error").info(msg, *args)
    (line,) = console()
    assert line["message"] == shown


@pytest.fixture
def uvicorn_loggers():
    """uvicorn's loggers as uvicorn sets them up before it imports the app (restored after)."""
    from logging.config import dictConfig

    from uvicorn.config import LOGGING_CONFIG

    dictConfig(LOGGING_CONFIG)
    yield
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [], True
        logger.setLevel(logging.NOTSET)


def test_the_web_servers_lines_go_out_once_through_the_apps_handler(capsys, uvicorn_loggers, console):
    logging.getLogger("uvicorn.access").handlers = []  # as --no-access-log leaves it
    logs.adopt_server_loggers()
    logging.getLogger("uvicorn.error").debug('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/ws/?ticket=abc")
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "1.2.3.4:9", "GET", "/x", "1.1", 200)
    lines = console()
    # Once, in the app's format (uvicorn's own handler would have written it a second time),
    # at the app's level (DEBUG here, uvicorn's own is INFO); the access log left off stays off.
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", '127.0.0.1:5 - "WebSocket /ws/?ticket=…" [accepted]')
    ]
    assert not logging.getLogger("uvicorn.access").handlers
    assert capsys.readouterr().err == ""  # uvicorn's own handler (on stderr) wrote nothing


# --- the request id ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (b"3f2b8c1e-8d4a-4f6e-9a3b-2c1d0e9f8a7b", True),
        (b"a" * MAX_CHARS, True),
        (b"nginx.7d0c_41-x", True),
        (b"a" * (MAX_CHARS + 1), False),  # too long
        (b"evil\nINFO forged line", False),  # a line break would forge a log line
        (b"x y", False),
        (b"", False),
    ],
)
def test_an_incoming_request_id_is_kept_only_when_well_formed(given, kept):
    request_id = request_id_from([(b"X-Request-ID", given)])
    if kept:
        assert request_id == given.decode()
    else:
        assert str(uuid.UUID(request_id)) == request_id  # a new one instead


@pytest.fixture
def application():
    """The whole ASGI app (imported before ``console``: its import sets the logging up again)."""
    from mothership.asgi import application

    return application


@pytest.mark.django_db(transaction=True)
async def test_a_response_echoes_its_request_id_and_its_lines_carry_it(application, console):
    host = (b"host", b"testserver")
    given = await HttpCommunicator(
        application, "GET", "/no-such-page", headers=[host, (b"x-request-id", b"client-abc.1")]
    ).get_response()
    made = await HttpCommunicator(application, "GET", "/no-such-page", headers=[host]).get_response()

    assert given["status"] == made["status"] == 404
    assert dict(given["headers"])[b"x-request-id"] == b"client-abc.1"
    made_id = dict(made["headers"])[b"x-request-id"].decode()
    assert str(uuid.UUID(made_id)) == made_id
    # Django's "Not Found" warning of each request carries that request's id.
    warned = [line for line in console() if line["logger"] == "django.request"]
    assert [line.get("request_id") for line in warned] == ["client-abc.1", made_id], warned


@pytest.mark.django_db
def test_a_signed_in_requests_lines_carry_its_user_id_once_it_is_known(console, user):
    browser = Client()
    browser.force_login(user)
    # The chat page asks who the user is, then finds no such chat.
    assert browser.get(f"/chats/{uuid.uuid4()}/").status_code == 404
    assert Client().get("/no-such-page").status_code == 404
    warned = [line for line in console() if line["logger"] == "django.request"]
    assert [line.get("user_id") for line in warned] == [str(user.pk), None], warned


@pytest.mark.django_db(transaction=True)
async def test_a_socket_messages_lines_carry_its_user_and_conversation(console, user, chat):
    communicator = WebsocketCommunicator(MothershipConsumer.as_asgi(), "/ws/")
    communicator.scope.update(user=user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "subscribe", "conversationId": str(chat.id)})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
    await communicator.send_json_to({"type": "ping", "conversationId": "not-an-id\nforged"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "pong"
    await communicator.disconnect()

    said = [line for line in console() if line["message"].startswith("socket message")]
    assert [(line["message"], line.get("chat_id"), line["user_id"]) for line in said] == [
        ("socket message on_subscribe", str(chat.id), str(user.pk)),
        ("socket message on_ping", None, str(user.pk)),  # a malformed id never reaches the log
    ]


# --- a form body past the limit ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_form_body_past_the_limit_is_413_with_one_warning_and_no_traceback(console, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    browser = Client()
    page = browser.post("/accounts/login/", {"username": "alice", "password": "pw-123456", "filler": "x" * 20_000})
    api = browser.post("/api/auth/token", {"username": "alice", "password": "pw-123456", "filler": "x" * 20_000})

    assert page.status_code == 413 and b"larger than 10000 bytes" in page.content
    assert api.status_code == 413 and api.json() == {"detail": "The request body is larger than 10000 bytes."}
    lines = console()
    refused = "bytes refused (larger than DATA_UPLOAD_MAX_MEMORY_SIZE): 413"
    assert [(line["level"], line["message"]) for line in lines] == [
        ("WARNING", f"POST /accounts/login/: body of {page.request['CONTENT_LENGTH']} {refused}"),
        ("WARNING", f"POST /api/auth/token: body of {api.request['CONTENT_LENGTH']} {refused}"),
    ], lines
    assert not any("exc_info" in line for line in lines)


@pytest.mark.django_db
def test_a_form_with_too_many_fields_is_400_and_a_form_within_the_limits_is_served(console, settings, user):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    crowded = Client().post("/accounts/login/", {f"f{i}": "x" for i in range(20)})
    signed_in = Client().post("/accounts/login/", {"username": "alice", "password": "pw-123456"})

    assert crowded.status_code == 400
    assert signed_in.status_code == 302  # the form read early is the form the view reads
    assert [line["level"] for line in console() if line["logger"] == "mothership.infra.bodies"] == ["WARNING"]
    assert not any("exc_info" in line for line in console())


def test_an_unknown_log_format_is_refused_by_name():
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "mothership.settings",
            "DJANGO_DEBUG": "1",
            "MOTHERSHIP_LOG_FORMAT": "xml",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "MOTHERSHIP_LOG_FORMAT must be one of text, json, got 'xml'" in done.stderr


# --- runall's own lines ------------------------------------------------------------------------


def test_runall_in_json_mode_passes_json_lines_through_and_makes_any_other_line_one(capsys):
    from mothership.management.commands.runall import Supervisor

    supervisor = Supervisor([], colour=False, json_lines=True)
    supervisor.say("worker", '{"level": "INFO", "message": "as the child wrote it"}\n', printed=True)
    supervisor.say("worker", "Traceback (most recent call last): ?token=abc123\n", printed=True)
    supervisor.say("worker", "exited with status 1; restarting in 1s")
    passed, made, own = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert passed == {"level": "INFO", "message": "as the child wrote it"}
    assert (made["logger"], made["process"], made["message"]) == (
        "mothership.runall.printed",
        "worker",
        "Traceback (most recent call last): ?token=…",
    )
    assert (own["logger"], own["process"], own["message"]) == (
        "mothership.runall",
        "worker",
        "exited with status 1; restarting in 1s",
    )


def test_runall_in_text_mode_masks_what_a_child_printed_past_its_logging(capsys, settings):
    from mothership.management.commands.runall import Supervisor

    settings.OPENAI_API_KEY = "sk-test-Provider-Key-0000aaaa1111"
    Supervisor([], colour=False).say("worker", "tool server said: key sk-test-Provider-Key-0000aaaa1111\n")
    out = capsys.readouterr().out
    assert "worker | tool server said: key sk-test…" in out and "Provider-Key" not in out


def test_beats_ticks_write_no_received_or_succeeded_lines_but_turns_and_failures_do():
    quiet = logs.QuietTasksFilter(tasks=["warming.dispatch"])

    def record(name: str, level: int) -> logging.LogRecord:
        line = logging.LogRecord("celery.app.trace", level, __file__, 1, "Task %(name)s succeeded", None, None)
        line.data = {"name": name, "id": "1"}
        return line

    assert quiet.filter(record("warming.dispatch", logging.INFO)) is False
    assert quiet.filter(record("warming.dispatch", logging.ERROR)) is True  # a failing tick still shows
    assert quiet.filter(record("streams.run_stream", logging.INFO)) is True  # a turn's line stays
    plain = logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1, "no data", None, None)
    assert quiet.filter(plain) is True
