from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from streams.services import stream_run, stream_start
from warming.services import warming_update

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def inline(inline_turns):
    pass


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_warm_now_then_warming_status(chat, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the seal frees the lock after commit
        stream_run(stream_id=stream_start(chat=chat, content="hello").stream.id)
    warming_update(chat=chat, enabled=True, interval_seconds=240)

    report = json.loads(run("warm_now", str(chat.id), "--json"))
    assert report["outcome"] == "warmed" and report["fields"]["lastCachePct"] == 100.0 and report["fields"]["warmCount"] == 1

    rows = json.loads(run("warming_status", "--json"))
    assert [r["chat"] for r in rows] == [str(chat.id)] and rows[0]["enabled"] is True
    table = run("warming_status")
    assert str(chat.id) in table and "100.0" in table


def test_warm_now_refuses_unknown_chats(chat):
    with pytest.raises(CommandError):
        run("warm_now", "not-a-uuid")
    assert "no enabled warming schedules" in run("warming_status")
