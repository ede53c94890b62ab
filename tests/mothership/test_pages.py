from __future__ import annotations

import subprocess
import sys

import pytest
from django.test import Client

from chats import services as chat_services
from mothership.infra import redis as redis_client
from streams import locks
from streams.services import stream_start

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_healthz_checks_database_and_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "database": "ok", "redis": "ok"}


def test_healthz_reports_redis_down_as_503(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    redis_client.reset_clients()
    response = client.get("/healthz")
    redis_client.reset_clients()  # the next client is built from the restored setting
    assert response.status_code == 503
    assert response.json()["redis"].startswith("error")


def test_home_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_home_shows_tiles_yellow_only_while_a_stream_is_live(browser, chat, workspace):
    idle = chat_services.chat_create(workspace=workspace, title="Idle chat")
    turn = stream_start(chat=chat, content="hi")
    html = browser.get("/").content.decode()
    assert f'data-chat-id="{chat.id}" data-state="streaming"' in html
    assert f'data-chat-id="{idle.id}" data-state="idle"' in html
    assert "tile--streaming" in html

    # The worker died and its lock expired: the tile is no longer yellow on the next render, and
    # says what happened (interrupted) even before the sweeper seals the stream.
    locks.lock_release(chat_id=chat.id, stream_id=turn.stream.id)
    html = browser.get("/").content.decode()
    assert f'data-chat-id="{chat.id}" data-state="interrupted"' in html
    assert "tile--streaming" not in html and "partial reply kept" in html


def test_home_of_a_foreign_workspace_is_404(browser, make_user):
    other = chat_services.workspace_create(name="Other", owner=make_user())
    assert browser.get(f"/?workspace={other.id}").status_code == 404


def test_chat_page_renders_the_transcript_and_is_404_for_strangers(browser, chat, make_user):
    stream_start(chat=chat, content="what is <b>up</b>")
    page = browser.get(f"/chats/{chat.id}/")
    assert page.status_code == 200
    assert "what is &lt;b&gt;up&lt;/b&gt;" in page.content.decode()
    stranger = Client()
    stranger.force_login(make_user())
    assert stranger.get(f"/chats/{chat.id}/").status_code == 404


def test_the_server_serves_its_css_and_scripts(live_server_url):
    import httpx

    for path, kind in (
        ("/static/mothership/app.css", "text/css"),
        ("/static/mothership/chat.js", "javascript"),
        ("/static/mothership/live.js", "javascript"),
    ):
        response = httpx.get(live_server_url + path, timeout=10)
        assert response.status_code == 200 and kind in response.headers["content-type"], path
        assert "max-age=" in response.headers["cache-control"], path  # WhiteNoise, not the dev handler


def test_collected_static_files_are_served_compressed(tmp_path):
    """After ``collectstatic`` (``runall`` runs it) a browser that accepts gzip gets the gzip copy."""
    import httpx

    from tests.support import processes

    static_root = tmp_path / "static"
    env = {**processes.process_env(), "MOTHERSHIP_STATIC_ROOT": str(static_root)}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=processes.ROOT, env=env, check=True
    )
    assert (static_root / "mothership" / "app.css.gz").exists()
    server, base = processes.start_server(
        tmp_path, MOTHERSHIP_STATIC_ROOT=str(static_root), DJANGO_DEBUG="0", DJANGO_SECRET_KEY="static-files-test"
    )
    try:
        response = httpx.get(base + "/static/mothership/app.css", headers={"Accept-Encoding": "gzip"}, timeout=10)
        assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"
        assert "vary" in response.headers and "max-age=3600" in response.headers["cache-control"]
    finally:
        server.stop()


def test_a_database_that_refuses_connections_answers_503_with_a_message(browser, api, chat, monkeypatch):
    from django.db import OperationalError
    from django.db.backends.base.base import BaseDatabaseWrapper

    def refuse(self):
        raise OperationalError("connection failed: FATAL:  sorry, too many clients already")

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", refuse)
    from django.db import connection

    connection.close() if not connection.in_atomic_block else None
    for client, path in ((api, f"/api/mothership/chats/{chat.id}"), (browser, "/")):
        response = client.get(path)
        assert response.status_code == 503, (path, response.status_code)
        assert b"database is unavailable" in response.content, path
