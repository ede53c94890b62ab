"""First run, as the server renders it: an empty chat's suggestions (for its model and tools, gone
once it has a message), the empty dashboard that says what to do, and the keyboard shortcut list
on every signed-in page (never on a public share page)."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from chats.models import Chat, Message
from chats.services import share_create
from mothership.infra.redis import get_redis
from streams.tools import CATALOG_PREFIX
from tests.support.tools import demo_servers

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def demo_listed(settings, tmp_path):
    """The demo tool server configured, its tools listed as a worker records them."""
    settings.MCP_SERVERS = demo_servers(tmp_path / "tools.jsonl")
    key = f"{CATALOG_PREFIX}demo"
    get_redis().set(key, json.dumps([{"name": "demo.roll", "description": "Dice"}, {"name": "demo.clock", "description": ""}]))
    yield
    get_redis().delete(key)


def _exchange(chat):
    asked = Message.objects.create(chat=chat, role=Message.Role.USER, content="hello")
    reply = Message.objects.create(chat=chat, role=Message.Role.ASSISTANT, content="hi", parent=asked)
    Chat.objects.filter(pk=chat.pk).update(leaf_id=reply.pk)


def _suggestions(html: str) -> list[str]:
    return re.findall(r'data-suggestion="([^"]+)"', html)


def test_an_empty_chat_shows_the_local_models_suggestions_above_the_composer(browser, chat):
    html = browser.get(f"/chats/{chat.id}/").content.decode()
    assert _suggestions(html) == ["markdown", "echo", "tools-off", "stop"]
    # inside the chat section, just before the composer; each a button that carries what it sends
    assert html.index('id="suggestions"') < html.index('id="composer"') and html.index('id="chat"') < html.index(
        'id="suggestions"'
    )
    assert re.search(r'<button type="button" class="card suggestion" data-suggestion="markdown" data-prompt="/echo ', html)


def test_a_chat_with_a_message_shows_none(browser, chat):
    _exchange(chat)
    html = browser.get(f"/chats/{chat.id}/").content.decode()
    assert 'id="suggestions"' not in html and _suggestions(html) == []


def test_the_tool_suggestion_follows_the_chats_tools(browser, chat, demo_listed):
    # Tools off in this chat: how to turn them on, naming the server.
    html = browser.get(f"/chats/{chat.id}/").content.decode()
    assert "tools-off" in _suggestions(html) and "Turn tools on" in html and "demo.*" in html
    # Allowed: a call of one of its tools.
    Chat.objects.filter(pk=chat.pk).update(tools=["demo.*"])
    html = browser.get(f"/chats/{chat.id}/").content.decode()
    assert "tool" in _suggestions(html) and 'data-prompt="/tool demo.roll {&quot;sides&quot;: 6, &quot;count&quot;: 2}"' in html


def test_with_two_kinds_of_model_both_lists_are_there_the_chats_shown(browser, chat, settings):
    settings.LLM_MODELS = [
        {"id": "local-1", "provider": "local", "model": "local-1", "label": "Local"},
        {"id": "claude", "provider": "anthropic", "label": "Claude", "model": "claude-x", "api_key": "k"},
    ]
    Chat.objects.filter(pk=chat.pk).update(model_id="claude")
    html = browser.get(f"/chats/{chat.id}/").content.decode()
    shown = re.search(r'<ul class="suggestions-list" data-kind="model" data-models="claude">', html)
    hidden = re.search(r'<ul class="suggestions-list" data-kind="local" data-models="local-1" hidden>', html)
    assert shown and hidden and shown.start() < hidden.start()
    assert _suggestions(html)[:2] == ["explain", "email"]


def test_an_empty_workspace_says_what_to_do(browser, workspace):
    html = browser.get("/").content.decode()
    assert 'id="no-tiles"' in html and "No conversations yet" in html
    form = re.search(r'<form method="post" action="/chats/new" class="empty-state-actions">(.*?)</form>', html, re.S)
    assert form and f'name="workspace" value="{workspace.id}"' in form.group(1) and "Start a conversation" in form.group(1)
    assert 'href="#import-form"' in html and 'id="import-form"' in html


def test_the_start_button_creates_a_chat_and_opens_it(browser, workspace):
    response = browser.post("/chats/new", {"workspace": str(workspace.id)})
    chat = Chat.objects.get(workspace=workspace)
    assert response.status_code == 302 and response["Location"] == f"/chats/{chat.id}/"


def test_a_workspace_with_conversations_or_the_archived_view_shows_no_empty_state(browser, workspace, chat):
    _exchange(chat)
    assert "No conversations yet" not in browser.get("/").content.decode()
    archived = browser.get(f"/?workspace={workspace.id}&archived=1").content.decode()
    assert '<p id="no-tiles">No archived conversations.</p>' in archived and "Start a conversation" not in archived


def test_someone_in_no_workspace_is_told_so_and_who_adds_them(make_user):
    client = Client()
    client.force_login(make_user())
    html = client.get("/").content.decode()
    assert 'id="no-tiles"' in html and "You are not in a workspace yet" in html and "administrator" in html
    assert "Start a conversation" not in html


def test_every_signed_in_page_has_the_shortcut_list_and_its_button(browser, chat):
    for path in ("/", f"/chats/{chat.id}/"):
        html = browser.get(path).content.decode()
        assert html.count('<dialog class="dialog shortcuts" id="shortcuts"') == 1, path
        assert 'id="shortcuts-open"' in html and 'src="/static/mothership/shortcuts.js"' in html, path
        assert html.index("</main>") < html.index('id="shortcuts"'), path  # outside the page's own content
        assert 'href="/static/mothership/firstrun.css"' in html
    for key in ("Enter", "Shift", "Esc", "Ctrl", "/"):
        assert f"<kbd>{key}</kbd>" in html


def test_signed_out_and_share_pages_have_no_shortcut_list(client, browser, user, chat):
    assert 'id="shortcuts"' not in client.get("/accounts/login/").content.decode()
    token = share_create(chat=chat, created_by=user).token
    for reader in (client, browser):  # signed out, and a member
        html = reader.get(f"/s/{token}").content.decode()
        assert "shortcuts" not in html and "<script" not in html
