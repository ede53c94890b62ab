"""Django admin: reconciled truth in the lists, and actions that call the API's services."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from chats.services import chat_create
from mothership.infra.redis import get_redis
from streams import locks
from streams.models import Stream
from streams.services import stream_run, stream_start
from warming.models import WarmingSchedule
from warming.services import warming_update

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def inline(turns_not_enqueued, settings):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 10
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0


@pytest.fixture
def staff(make_user, client):
    admin = make_user("root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    return client


def _act(staff, model: str, action: str, pks) -> str:
    response = staff.post(f"/admin/{model}/", {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True)
    assert response.status_code == 200
    return " ".join(str(m) for m in response.context["messages"])


def test_the_chat_list_shows_reconciled_state_not_the_raw_marker(staff, workspace):
    live = chat_create(workspace=workspace, title="really streaming")
    dead = chat_create(workspace=workspace, title="worker died")
    stream_start(chat=live, content="hi")
    turn = stream_start(chat=dead, content="hi")
    get_redis().delete(locks.lock_key(dead.id))  # its lock expired; the marker is still set

    html = staff.get("/admin/chats/chat/").content.decode()

    row = lambda title: html[html.index(title) :].split("</tr>")[0]  # noqa: E731
    assert "streaming" in row("really streaming")
    assert "interrupted" in row("worker died") and str(turn.stream.id) not in row("worker died")
    for query in ("?state=streaming", "?warming=on", "?q=worker", f"?q={dead.id}"):
        assert staff.get("/admin/chats/chat/" + query).status_code == 200
    assert staff.get(f"/admin/chats/chat/{dead.id}/change/").status_code == 200
    assert staff.get("/admin/streams/stream/").status_code == 200
    assert staff.get(f"/admin/streams/stream/{turn.stream.id}/change/").status_code == 200
    assert staff.get("/admin/warming/warmingschedule/").status_code == 200


def test_chat_actions_call_the_services_and_report_per_row(staff, workspace, chat):
    idle = chat_create(workspace=workspace, title="idle")
    turn = stream_start(chat=chat, content="hi")
    warming_update(chat=chat, enabled=True)
    logged = LogEntry.objects.count()

    assert "Cancel: 1 cancelled, 1 not running" in _act(staff, "chats/chat", "cancel_running_turns", [chat.pk, idle.pk])
    assert Stream.objects.get(pk=turn.stream.pk).status == "cancelled"
    assert "Close: 2 closed, 1 warming disabled" in _act(staff, "chats/chat", "close_chats", [chat.pk, idle.pk])
    assert WarmingSchedule.objects.get(chat=chat).stop_reason == "closed"
    assert "Warming: 2 enabled" in _act(staff, "chats/chat", "enable_warming", [chat.pk, idle.pk])
    assert "Warming: 2 disabled" in _act(staff, "chats/chat", "disable_warming", [chat.pk, idle.pk])
    stream_run(stream_id=stream_start(chat=idle, content="a prefix").stream.id)
    assert "Warm now: 1 warmed" in _act(staff, "chats/chat", "warm_now", [idle.pk])
    assert LogEntry.objects.count() > logged  # every action is in Django's admin log


def test_stream_actions_cancel_only_live_streams_and_sweep_orphans(staff, workspace, chat):
    finished = stream_start(chat=chat, content="first")
    stream_run(stream_id=finished.stream.id)
    live = stream_start(chat=chat, content="second")
    assert "Cancel: 1 cancelled, 1 already finished" in _act(
        staff, "streams/stream", "cancel_streams", [finished.stream.id, live.stream.id]
    )

    other = chat_create(workspace=workspace, title="orphan")
    orphan = stream_start(chat=other, content="lost")
    locks.lock_release(chat_id=other.id, stream_id=orphan.stream.id)
    assert "Sweep: 1 interrupted" in _act(staff, "streams/stream", "sweep_streams", [orphan.stream.id])
    assert Stream.objects.get(pk=orphan.stream.id).status == "interrupted"


def test_warming_actions(staff, chat):
    stream_run(stream_id=stream_start(chat=chat, content="hello").stream.id)
    WarmingSchedule.objects.create(chat=chat)
    assert "Warming: 1 enabled" in _act(staff, "warming/warmingschedule", "enable", [chat.pk])
    assert "Warm now: 1 warmed" in _act(staff, "warming/warmingschedule", "warm_now", [chat.pk])
    assert "Warming: 1 disabled" in _act(staff, "warming/warmingschedule", "disable", [chat.pk])


def test_the_front_page_and_the_streams_name_the_model(staff, chat, settings):
    stream_run(stream_id=stream_start(chat=chat, content="hi").stream.id)
    settings.LLM_PROVIDER, settings.LLM_MODEL = "anthropic", "claude-x"
    assert "models: claude-x (anthropic / claude-x)" in staff.get("/admin/").content.decode()
    streams = staff.get("/admin/streams/stream/").content.decode()
    assert "mothership-local-1" in streams and "local" in streams


def test_the_admin_is_for_staff_only(client, user, chat):
    # Given: a signed-in member (not staff) of a workspace whose chat has a live turn.
    turn = stream_start(chat=chat, content="hi")
    client.force_login(user)

    # When / then: every admin page sends them to the admin's sign-in, and no action runs.
    for url in (
        "/admin/",
        "/admin/chats/chat/",
        f"/admin/chats/chat/{chat.id}/change/",
        "/admin/streams/stream/",
        f"/admin/streams/stream/{turn.stream.id}/change/",
        "/admin/warming/warmingschedule/",
    ):
        answer = client.get(url)
        assert (answer.status_code, answer.headers["Location"].split("?")[0]) == (302, "/admin/login/"), url
    acted = client.post("/admin/chats/chat/", {"action": "cancel_running_turns", "_selected_action": [str(chat.pk)]})
    assert acted.status_code == 302 and acted.headers["Location"].startswith("/admin/login/")
    assert Stream.objects.get(pk=turn.stream.pk).status == "queued"
    assert chat.title not in client.get("/admin/chats/chat/", follow=True).content.decode()
