"""Where the row-lock tests run when the suite itself is not on PostgreSQL.

Tests marked ``postgres`` need PostgreSQL's row locks (``SELECT … FOR UPDATE SKIP LOCKED``);
SQLite has none, so on the embedded defaults they are deselected from the run and run again,
in a child pytest, on a private database of the PostgreSQL server named by
``MOTHERSHIP_TEST_POSTGRES_URL`` (default: the local server, as CI and the development
machines have). Without a reachable server the wrapper test skips and says so loudly.
"""

from __future__ import annotations

import os

import dj_database_url

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres"
MARKER = "postgres"


def on_postgres() -> bool:
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith(("postgresql", "postgis"))


def server_url() -> str:
    return os.environ.get("MOTHERSHIP_TEST_POSTGRES_URL") or DEFAULT_SERVER_URL


def reachable(url: str) -> str | None:
    """None when a connection can be made; else why not."""
    import psycopg

    db = dj_database_url.parse(url)
    try:
        psycopg.connect(
            host=db["HOST"] or "127.0.0.1",
            port=db["PORT"] or 5432,
            user=db["USER"] or None,
            password=db["PASSWORD"] or None,
            dbname=db["NAME"] or "postgres",
            connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def private_database_url(url: str, name: str) -> str:
    """The same server, another database name (pytest-django creates ``test_<name>`` on it)."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"
