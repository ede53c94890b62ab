"""A chat's system prompt: set through the API, sent before the conversation on every turn (as
each provider takes it), recorded by the turn that used it, and sent by the warms too, so that a
warm reads the prefix its turn wrote."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chats.models import SYSTEM_PROMPT_MAX, Chat
from chats.selectors import conversation_prefix, conversation_prefixes
from chats.services import chat_set_system_prompt
from streams.providers import get_provider
from streams.providers.local import LocalProvider
from streams.services.history import conversation_history
from tests import factories
from tests.support.fake_anthropic import API_KEY, FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.turns import run_turn

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = "Answer briefly"  # two tokens to the fakes (a token is a word there)


@pytest.fixture
def instant_model(settings):
    """The offline model answers at once (its reply does not depend on its pace)."""
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0


def test_the_api_sets_shows_and_clears_the_system_prompt(api, workspace, user):
    body = {"workspace": str(workspace.id), "title": "Prompted", "system_prompt": PROMPT}  # titled: listed before a message
    made = api.post("/api/mothership/chats", body, format="json")
    assert made.status_code == 201
    chat_id = made.json()["id"]
    assert api.get(f"/api/mothership/chats/{chat_id}").json()["system_prompt"] == PROMPT
    assert "system_prompt" not in api.get("/api/mothership/chats").json()[0]  # not on every tile

    changed = api.patch(f"/api/mothership/chats/{chat_id}", {"system_prompt": "  Reply in French.\n"}, format="json")
    assert changed.status_code == 200 and changed.json()["system_prompt"] == "Reply in French."
    cleared = api.patch(f"/api/mothership/chats/{chat_id}", {"system_prompt": ""}, format="json")
    assert cleared.status_code == 200 and Chat.objects.get(pk=chat_id).system_prompt == ""


def test_a_bad_system_prompt_is_a_clear_400_and_changes_nothing(api, chat, workspace):
    chat_set_system_prompt(chat=chat, system_prompt=PROMPT)
    url = f"/api/mothership/chats/{chat.id}"
    too_long = api.patch(url, {"system_prompt": "x" * (SYSTEM_PROMPT_MAX + 1)}, format="json")
    assert too_long.status_code == 400 and "system_prompt" in str(too_long.json())
    not_text = api.patch(url, {"system_prompt": ["a", "b"]}, format="json")
    assert not_text.status_code == 400 and "Must be a string." in str(not_text.json())
    unknown = api.patch(url, {"system": PROMPT}, format="json")
    assert unknown.status_code == 400 and "system_prompt" in str(unknown.json())
    member = factories.MembershipFactory(workspace=workspace).user
    other = APIClient()
    other.force_authenticate(member)
    assert other.patch(url, {"system_prompt": "mine now"}, format="json").status_code == 403
    assert Chat.objects.get(pk=chat.pk).system_prompt == PROMPT


def test_a_turn_sends_and_records_the_prompt_it_started_with(chat, turns_not_enqueued, instant_model):
    chat_set_system_prompt(chat=chat, system_prompt=PROMPT)
    status, stream, message = run_turn(chat, "hello")
    assert status == "completed" and stream.system_prompt == PROMPT
    assert conversation_history(stream=stream) == [{"role": "system", "content": PROMPT}, {"role": "user", "content": "hello"}]
    chat_set_system_prompt(chat=chat, system_prompt="Something else")
    assert conversation_history(stream=stream)[0]["content"] == PROMPT  # the turn's own, whatever the chat has now
    # The offline model answers another prompt with another reply.
    other = factories.ChatFactory(workspace=chat.workspace)
    assert run_turn(other, "hello")[2].content != message.content


def test_a_warm_sends_the_same_prefix_as_the_next_turn(chat, workspace, turns_not_enqueued, instant_model):
    chat_set_system_prompt(chat=chat, system_prompt=PROMPT)
    run_turn(chat, "hello")
    plain = factories.ChatFactory(workspace=workspace)
    run_turn(plain, "hello")
    empty = factories.ChatFactory(workspace=workspace, system_prompt=PROMPT)
    batch = conversation_prefixes(chat_ids=[chat.id, plain.id, empty.id])
    assert batch[chat.id] == conversation_prefix(chat_id=chat.id) and batch[chat.id][0] == {"role": "system", "content": PROMPT}
    assert batch[plain.id] == conversation_prefix(chat_id=plain.id) and batch[plain.id][0]["role"] == "user"
    assert batch[empty.id] == conversation_prefix(chat_id=empty.id) == []  # nothing to warm yet
    # The offline model's cache: the warm reads every token the turn wrote, system prompt included.
    usage = LocalProvider().warm(messages=batch[chat.id])
    assert usage.cache_read_tokens > 0 and usage.cache_write_tokens == 0


@pytest.fixture
def anthropic(settings):
    server = FakeAnthropic()
    settings.LLM_PROVIDER, settings.LLM_MODEL = "anthropic", "claude-fake"
    settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL = API_KEY, server.url
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT, settings.MOTHERSHIP_DELTA_FLUSH_MS = 0, 2, 0
    yield server
    server.stop()


def test_anthropic_gets_the_system_parameter_and_its_warm_reads_what_the_turn_wrote(anthropic, chat, turns_not_enqueued):
    chat_set_system_prompt(chat=chat, system_prompt=PROMPT)
    status, _, message = run_turn(chat, "first question")
    assert status == "completed" and message.cache_write_tokens == 4  # system (2) + question (2)
    body = anthropic.requests[-1]["body"]
    assert body["system"] == [{"type": "text", "text": PROMPT}]
    assert [m["role"] for m in body["messages"]] == ["user"]  # never a "system" message: the API refuses one

    usage = get_provider().warm(messages=conversation_prefix(chat_id=chat.id))
    assert anthropic.requests[-1]["body"]["system"] == [{"type": "text", "text": PROMPT}]
    assert usage.cache_read_tokens == 4  # the turn's prefix, system prompt and all

    chat_set_system_prompt(chat=chat, system_prompt="Answer at length")
    changed = get_provider().warm(messages=conversation_prefix(chat_id=chat.id))
    assert changed.cache_read_tokens == 0  # another system prompt is another prefix


def test_openai_gets_it_as_the_first_message(settings, chat, turns_not_enqueued):
    server = FakeOpenAI()
    settings.LLM_PROVIDER, settings.LLM_MODEL = "openai", "gpt-fake"
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "sk-test", server.url
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT, settings.MOTHERSHIP_DELTA_FLUSH_MS = 0, 5, 0
    try:
        chat_set_system_prompt(chat=chat, system_prompt=PROMPT)
        assert run_turn(chat, "hello")[0] == "completed"
        assert server.requests[-1]["body"]["messages"] == [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": "hello"},
        ]
    finally:
        server.stop()
