"""Several models side by side (``LLM_MODELS``): the local model, Anthropic and an OpenAI-compatible
server in one deployment; each chat picks one, each stream records the model it used, warms go
to each chat's own model, ``provider_check`` checks every model, and a mistake in the list stops
the app at start with a sentence naming the entry."""

from __future__ import annotations

import json
import re

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from chats.models import Chat
from mothership.infra.llm_models import parse_llm_models
from tests import factories
from tests.support import fake_anthropic, fake_openai
from tests.support.turns import django_start, run_turn
from warming.dispatch import warming_warm_now
from warming.models import WarmingSchedule

pytestmark = pytest.mark.django_db

PRICES = {"input": 1.0, "cache_read": 0.1, "cache_write": 1.25, "output": 5.0}


@pytest.fixture
def three(settings, turns_not_enqueued):
    anthropic, openai = fake_anthropic.FakeAnthropic(), fake_openai.FakeOpenAI()
    entries = [
        {"id": "local", "provider": "local", "label": "Offline"},
        {"id": "claude", "provider": "anthropic", "model": "claude-fake", "base_url": anthropic.url, "max_tokens": 321},
        {
            "id": "reasoner",
            "provider": "openai",
            "model": "o-fake",
            "base_url": openai.url,
            "api_key_env": "REASONER_KEY",
            "max_tokens_param": "max_completion_tokens",
            "max_tokens": 654,
            "prompt_cache_key": True,
            "prices": PRICES,
        },
    ]
    env = {"ANTHROPIC_API_KEY": fake_anthropic.API_KEY, "REASONER_KEY": "sk-reasoner"}
    settings.LLM_MODELS = parse_llm_models(json.dumps(entries), env, max_tokens=4096)
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT, settings.MOTHERSHIP_DELTA_FLUSH_MS = 0, 5, 0
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0  # the local model answers at once
    yield anthropic, openai
    anthropic.stop()
    openai.stop()


def test_each_chat_streams_from_its_own_model_and_each_stream_records_it(three, workspace):
    anthropic, openai = three
    chats = {m: factories.ChatFactory(workspace=workspace, model_id=m) for m in ("local", "claude", "reasoner")}
    default = factories.ChatFactory(workspace=workspace)  # names none: the first model
    outcomes = {name: run_turn(chat, "hello") for name, chat in {**chats, "default": default}.items()}
    recorded = {name: (s.model_id, s.provider, s.model, status) for name, (status, s, _m) in outcomes.items()}
    assert recorded == {
        "local": ("local", "local", "mothership-local-1", "completed"),
        "claude": ("claude", "anthropic", "claude-fake", "completed"),
        "reasoner": ("reasoner", "openai", "o-fake", "completed"),
        "default": ("local", "local", "mothership-local-1", "completed"),
    }
    assert outcomes["claude"][2].content == "".join(fake_anthropic.WORDS)
    assert anthropic.requests[-1]["body"]["max_tokens"] == 321
    sent = openai.requests[-1]
    assert sent["auth"] == "Bearer sk-reasoner"
    assert sent["body"]["max_completion_tokens"] == 654 and "max_tokens" not in sent["body"]
    assert sent["body"]["prompt_cache_key"] == str(chats["reasoner"].id)


def test_an_openai_model_gets_max_tokens_and_no_cache_key_unless_its_entry_says_so(settings, chat, turns_not_enqueued):
    server = fake_openai.FakeOpenAI()
    entries = [{"id": "ollama", "provider": "openai", "model": "qwen", "base_url": server.url, "max_tokens": 77}]
    settings.LLM_MODELS = parse_llm_models(json.dumps(entries), {"OPENAI_API_KEY": "x"}, max_tokens=4096)
    settings.LLM_MAX_RETRIES = 0
    try:
        status, _stream, _message = run_turn(chat, "hello")
    finally:
        server.stop()
    body = server.requests[-1]["body"]
    assert status == "completed" and body["max_tokens"] == 77 and "prompt_cache_key" not in body


def test_the_api_lists_the_models_and_a_chat_picks_one(three, api, user, workspace):
    listed = api.get("/api/mothership/models").json()
    assert [(m["id"], m["provider"], m["default"]) for m in listed] == [
        ("local", "local", True),
        ("claude", "anthropic", False),
        ("reasoner", "openai", False),
    ]
    assert all(
        set(m) == {"id", "label", "provider", "model", "prompt_cache", "prefill", "images", "documents", "default"}
        for m in listed
    )
    assert listed[0]["label"] == "Offline" and listed[1]["prefill"] is True and listed[2]["prefill"] is False

    made = api.post("/api/mothership/chats", {"workspace": str(workspace.id), "title": "t", "model": "claude"}, format="json")
    assert made.status_code == 201 and made.json()["model"] == "claude"
    refused = api.post("/api/mothership/chats", {"workspace": str(workspace.id), "title": "t", "model": "gpt-9"}, format="json")
    assert refused.status_code == 400 and "No model 'gpt-9'" in refused.json()["detail"]

    chat_id = made.json()["id"]
    changed = api.patch(f"/api/mothership/chats/{chat_id}", {"model": "reasoner"}, format="json")
    assert changed.status_code == 200 and changed.json()["model"] == "reasoner"
    assert Chat.objects.get(pk=chat_id).model_id == "reasoner"
    member = factories.MembershipFactory(workspace=workspace).user
    client = APIClient()
    client.force_authenticate(member)
    assert client.patch(f"/api/mothership/chats/{chat_id}", {"model": "local"}, format="json").status_code == 403
    assert api.patch(f"/api/mothership/chats/{chat_id}", {"model": "nope"}, format="json").status_code == 400


def test_a_chat_whose_model_is_no_longer_offered_uses_the_default(three, workspace):
    chat = factories.ChatFactory(workspace=workspace, model_id="retired")
    status, stream, _ = run_turn(chat, "hello")
    assert status == "completed" and stream.model_id == "local"


def test_a_warm_goes_to_the_chats_own_model_and_is_priced_by_its_entry(three, workspace):
    _anthropic, openai = three
    chat = factories.ChatFactory(workspace=workspace, model_id="reasoner")
    factories.MessageFactory(chat=chat, role="user", content="hello")
    factories.MessageFactory(chat=chat, role="assistant", content="Hello from the fake model.")
    before = len(openai.requests)
    assert warming_warm_now(chat_id=chat.pk, inline=True).outcome == "warmed"
    assert len(openai.requests) == before + 1 and openai.requests[-1]["body"]["max_completion_tokens"] == 1
    schedule = WarmingSchedule.objects.get(chat=chat)
    # The fake's warm: 20 prompt tokens of which 12 cached, 1 output, at this entry's prices.
    assert schedule.last_warm_cost == pytest.approx((8 * 1.0 + 12 * 0.1 + 1 * 5.0) / 1_000_000)


def test_provider_check_prints_one_line_per_model_and_fails_when_one_does(three, capsys, settings):
    call_command("provider_check")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["local", "claude", "reasoner"]
    assert all(": ok, usage" in line for line in lines)

    settings.LLM_MODELS = [{**m, "api_key": "sk-ant-revoked"} if m["id"] == "claude" else m for m in settings.LLM_MODELS]
    with pytest.raises(SystemExit):
        call_command("provider_check")
    out = capsys.readouterr().out
    assert "claude    anthropic / claude-fake" in out
    assert (
        "FAILED: authentication failed (check the key in ANTHROPIC_API_KEY, the api_key_env of LLM_MODELS entry 'claude')" in out
    )
    assert "reasoner  openai / o-fake" in out and out.count(": ok, usage") == 2
    call_command("provider_check", "--model", "reasoner", "--json")
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_a_failure_names_the_llm_models_entry_to_fix_not_the_shorthands_variables(three, workspace, settings):
    """Before, a model of LLM_MODELS failed with "check OPENAI_API_KEY" or "check LLM_MODEL and
    ANTHROPIC_BASE_URL": variables its entry does not read."""
    anthropic, _openai = three

    def reasoner():
        return factories.ChatFactory(workspace=workspace, model_id="reasoner")

    _status, refused, _ = run_turn(reasoner(), "401")
    assert refused.reason == (
        "authentication failed (check the key in REASONER_KEY, the api_key_env of LLM_MODELS entry 'reasoner'): "
        "Incorrect API key provided"
    )
    _status, unknown, _ = run_turn(reasoner(), "404 model")
    assert unknown.reason == (
        "not found (check the model and base_url of LLM_MODELS entry 'reasoner'): "
        "The model `o-fake` does not exist or you do not have access to it."
    )
    settings.LLM_MODELS = [{**m, "base_url": anthropic.url + "/proxy"} if m["id"] == "claude" else m for m in settings.LLM_MODELS]
    claude = factories.ChatFactory(workspace=workspace, model_id="claude")
    _status, lost, _ = run_turn(claude, "hello")
    assert lost.reason == "not found (check the model and base_url of LLM_MODELS entry 'claude'): Not found: /proxy/v1/messages"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("not json", "LLM_MODELS must be a JSON list of models"),
        ('[{"id": "x", "provider": "gemini"}]', "provider must be one of local, anthropic, openai"),
        (
            '[{"id": "c", "provider": "anthropic", "model": "m"}]',
            "the environment variable ANTHROPIC_API_KEY must hold its API key",
        ),
        ('[{"id": "a", "provider": "local"}, {"id": "a", "provider": "local"}]', "ids must be unique"),
        (
            '[{"id": "o", "provider": "openai", "model": "m", "api_key_env": "K", "max_tokens_param": "limit"}]',
            "max_tokens_param",
        ),
        ('[{"id": "l", "provider": "local", "colour": "red"}]', "unknown fields ['colour']"),
    ],
)
def test_a_mistake_in_the_model_list_is_named(models, message):
    env = {"K": "k"}
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_llm_models(models, env, max_tokens=100)


def test_a_mistake_in_the_model_list_stops_the_app_at_start():
    result = django_start(LLM_MODELS='[{"id": "x", "provider": "gemini"}]')
    assert result.returncode != 0 and "provider must be one of local, anthropic, openai" in result.stderr, result.stderr[-500:]


def test_warming_cannot_be_turned_on_for_a_model_that_keeps_no_prompt_cache(settings, api, workspace, user):
    entries = [{"id": "local", "provider": "local"}, {"id": "nocache", "provider": "local", "prompt_cache": False}]
    settings.LLM_MODELS = parse_llm_models(json.dumps(entries), {}, max_tokens=100)
    chat = factories.ChatFactory(workspace=workspace, created_by=user, model_id="nocache")
    refused = api.put(f"/api/mothership/chats/{chat.id}/warming", {"enabled": True}, format="json")
    assert refused.status_code == 400 and "keeps no prompt cache" in refused.json()["detail"]
    assert not WarmingSchedule.objects.filter(chat=chat, enabled=True).exists()
    other = factories.ChatFactory(workspace=workspace, created_by=user, model_id="local")
    assert api.put(f"/api/mothership/chats/{other.id}/warming", {"enabled": True}, format="json").status_code == 200


def test_the_chat_page_offers_the_models_to_those_who_may_change_it(three, client, user, workspace):
    chat = factories.ChatFactory(workspace=workspace, created_by=user, model_id="claude")
    client.force_login(user)
    html = client.get(f"/chats/{chat.id}/").content.decode()
    picker = html[html.index('<select id="chat-model"') : html.index("</select>")]
    assert picker.count("<option") == 3 and '<option value="claude" selected data-prefill="true">' in picker
    assert '<option value="reasoner" data-prefill="false">' in picker  # the page offers Continue by it
    assert "disabled" not in picker
    member = factories.MembershipFactory(workspace=workspace).user
    client.force_login(member)
    html = client.get(f"/chats/{chat.id}/").content.decode()
    assert '<select id="chat-model" disabled' in html


def test_one_model_shows_no_picker(client, user, chat):
    client.force_login(user)
    assert 'id="chat-model"' not in client.get(f"/chats/{chat.id}/").content.decode()


def test_each_assistant_message_carries_its_cost_from_its_models_prices(three, api, workspace):
    chat = factories.ChatFactory(workspace=workspace, model_id="reasoner")
    run_turn(chat, "hello")
    messages = api.get(f"/api/mothership/chats/{chat.id}").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["cost_usd"] is None
    # The fake's usage: 30 prompt tokens of which 24 cached, one output token per word.
    expected = (6 * 1.0 + 24 * 0.1 + len(fake_openai.WORDS) * 5.0) / 1_000_000
    assert messages[1]["cost_usd"] == pytest.approx(expected)
    assert api.get(f"/api/mothership/chats/{chat.id}/messages").json()[1]["cost_usd"] == pytest.approx(expected)
