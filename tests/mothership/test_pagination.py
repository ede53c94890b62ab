"""Cursor pagination: the chat list, a chat's messages and the dashboard come a page at a time,
newest first, with the next page's cursor (``Link: rel="next"``, the detail's ``messages_cursor``,
the dashboard's "Older conversations"), so that a workspace of 10,000 chats stays one page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from chats.models import Chat, Message
from tests import factories

pytestmark = pytest.mark.django_db


def _chats(workspace, n: int, *, spread: bool = True) -> list[Chat]:
    """``n`` chats, the last one the most recently updated (two share each timestamp, to test ties)."""
    start = timezone.now() - timedelta(days=1)
    chats = Chat.objects.bulk_create(Chat(workspace=workspace, title=f"chat {i}") for i in range(n))
    if not spread:  # as created, a microsecond or so apart
        return chats
    for i, chat in enumerate(chats):
        chat.updated_at = start + timedelta(seconds=i // 2)
    Chat.objects.bulk_update(chats, ["updated_at"])
    return chats


def _next(response) -> str | None:
    found = re.search(r'<([^>]+)>; rel="next"', response.get("Link", ""))
    return found.group(1) if found else None


def test_the_chat_list_walks_every_chat_once_newest_first(api, workspace):
    chats = _chats(workspace, 7)
    url, seen, sizes = f"/api/mothership/chats?workspace={workspace.id}&limit=3", [], []
    while url:
        page = api.get(url)
        assert page.status_code == 200, page.content
        sizes.append(len(page.json()))
        seen += [c["id"] for c in page.json()]
        url = _next(page)
        assert url is None or url.startswith("http://testserver/api/mothership/chats?")
    assert sizes == [3, 3, 1]
    expected = sorted(chats, key=lambda c: (c.updated_at, c.created_at, c.id), reverse=True)
    assert seen == [str(c.id) for c in expected]


def test_the_list_is_a_page_of_100_by_default(api, workspace):
    _chats(workspace, 105)
    first = api.get(f"/api/mothership/chats?workspace={workspace.id}")
    assert len(first.json()) == 100 and _next(first)
    assert len(api.get(_next(first)).json()) == 5


@pytest.mark.parametrize("query", ["cursor=nonsense", "cursor=WyJ4Il0", "limit=0", "limit=501", "limit=many"])
def test_a_bad_cursor_or_limit_answers_400_with_a_sentence(api, workspace, query):
    answer = api.get(f"/api/mothership/chats?workspace={workspace.id}&{query}")
    assert answer.status_code == 400 and answer.json()["detail"]


def _messages(chat, n: int) -> list[Message]:
    start = timezone.now() - timedelta(hours=1)
    messages = Message.objects.bulk_create(
        Message(chat=chat, role="user" if i % 2 == 0 else "assistant", content=f"m{i}") for i in range(n)
    )
    for i, message in enumerate(messages):
        message.created_at = start + timedelta(seconds=i)
    Message.objects.bulk_update(messages, ["created_at"])
    return messages


def test_a_chats_detail_carries_its_latest_messages_and_a_cursor_to_the_earlier_ones(api, chat):
    _messages(chat, 250)
    detail = api.get(f"/api/mothership/chats/{chat.id}").json()
    assert [m["content"] for m in detail["messages"]] == [f"m{i}" for i in range(150, 250)]  # oldest first

    earlier = api.get(f"/api/mothership/chats/{chat.id}/messages?cursor={detail['messages_cursor']}")
    assert earlier.status_code == 200
    assert [m["content"] for m in earlier.json()] == [f"m{i}" for i in range(50, 150)]
    first = api.get(_next(earlier))
    assert [m["content"] for m in first.json()] == [f"m{i}" for i in range(50)] and _next(first) is None


def test_a_short_chat_has_no_cursor_and_non_members_get_404(api, chat):
    _messages(chat, 3)
    assert api.get(f"/api/mothership/chats/{chat.id}").json()["messages_cursor"] is None
    stranger = APIClient()
    stranger.force_authenticate(factories.UserFactory())
    assert stranger.get(f"/api/mothership/chats/{chat.id}/messages").status_code == 404


def test_the_dashboard_of_10000_chats_shows_one_page_in_a_fixed_number_of_queries(client, user, workspace):
    _chats(workspace, 10_000, spread=False)
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/")
    html = page.content.decode()
    assert page.status_code == 200 and html.count('<li class="tile ') == 100
    assert len(queries) <= 10, [q["sql"][:80] for q in queries.captured_queries]
    older = re.search(r'href="(\?workspace=[^"]+&amp;cursor=[^"]+)" id="older-tiles"', html)
    assert older
    second = client.get("/" + older.group(1).replace("&amp;", "&")).content.decode()
    assert second.count('<li class="tile ') == 100 and "Newest conversations" in second
    assert set(re.findall(r'data-chat-id="([^"]+)"', html)).isdisjoint(re.findall(r'data-chat-id="([^"]+)"', second))
    assert client.get(f"/?workspace={workspace.id}&cursor=junk").status_code == 400
