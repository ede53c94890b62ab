"""The demo data (``seed_demo``, debug only): chats that open on an exchange a new user learns
from (a Markdown reply with a table and a code block, cache warming in a sentence, a tool call
when the demo tool server is on), made once however often it runs."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from chats.models import Chat, Message
from mothership.infra.markdown import render_markdown
from tests.support.tools import demo_servers

pytestmark = pytest.mark.django_db


def _replies():
    return {
        chat.title: Message.objects.get(pk=chat.leaf_id) for chat in Chat.objects.filter(workspace__name="Demo").order_by("title")
    }


def test_the_demo_chats_open_on_real_content(settings):
    settings.DEBUG, settings.MCP_SERVERS = True, ()
    call_command("seed_demo")
    replies = _replies()
    assert set(replies) == {"Welcome to Mothership", "Release notes draft", "What is cache warming?"}
    welcome = render_markdown(replies["Welcome to Mothership"].content)
    for tag in ("<h2>", "<table>", "<pre ", "<li>"):
        assert tag in welcome, tag
    warming = replies["What is cache warming?"]
    assert warming.content.count(". ") == 0 and warming.content.endswith(".")  # one sentence
    assert "off until you turn it on" in warming.content
    assert all(reply.parent.role == Message.Role.USER and reply.tool_calls == [] for reply in replies.values())


def test_with_the_demo_tool_server_one_chat_shows_a_tool_call_and_a_second_run_adds_nothing(settings, tmp_path):
    settings.DEBUG, settings.MCP_SERVERS = True, demo_servers(tmp_path / "tools.jsonl")
    call_command("seed_demo")
    call_command("seed_demo")
    replies = _replies()
    assert len(replies) == 4 and Chat.objects.filter(workspace__name="Demo").count() == 4
    dice = replies["Roll the dice (a tool call)"]
    assert dice.parent.content == '/tool demo.roll {"sides": 6, "count": 2}'
    [call] = dice.tool_calls
    assert call["tool"] == "demo.roll" and call["status"] == "ok" and call["content"] == dice.content
    assert call["arguments"] == {"sides": 6, "count": 2}
    assert Chat.objects.get(title="Roll the dice (a tool call)").tools == ["demo.*"]
