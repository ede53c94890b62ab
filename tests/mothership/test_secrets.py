"""Secrets never shown (``mothership/infra/secrets.py``): what a provider or a tool server says
reaches a turn's reason, a warm's ``lastError``, a tool's error, ``provider_check`` and the log with
every configured key masked by value and every key-shaped token by shape. Before, only ``sk-…``
and ``Bearer …`` were masked: ``ollama-SECRET-…``, ``key=AIza…`` or a 32-hex key showed."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from django.core.management import call_command

from chats.models import Message
from mothership.infra.llm_models import parse_llm_models
from mothership.infra.mcp.client import ToolServers
from mothership.infra.mcp.config import parse_servers
from mothership.infra.secrets import MaskingFormatter
from streams.providers.base import provider_message
from tests.support import fake_openai
from tests.support.processes import ROOT
from tests.support.turns import run_turn
from warming import dispatch
from warming.models import WarmingSchedule

pytestmark = pytest.mark.django_db

LOCAL_KEY = "ollama-SECRET-7f3a9c2d"
KEYS = {
    "a local server's own key": LOCAL_KEY,
    "a Google key": "AIzaSyC4x9J2kL0pQ7rT1uV3wX5yZ8aB6cD2eF",
    "a 32-hex key": "0123456789abcdef0123456789abcdef",
}


@pytest.fixture
def leaky_openai(settings, turns_not_enqueued):
    """An OpenAI-format server that answers "401" with the request's key in its message (as proxies do)."""
    server = fake_openai.FakeOpenAI(quirks={"echo_key"})
    settings.LLM_PROVIDER, settings.LLM_MODEL, settings.OPENAI_BASE_URL = "openai", "gpt-fake", server.url
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT, settings.MOTHERSHIP_DELTA_FLUSH_MS = 0, 5, 0
    yield server
    server.stop()


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_a_failed_turns_reason_keeps_the_servers_words_and_masks_the_key(settings, leaky_openai, chat, key):
    settings.OPENAI_API_KEY = key
    status, stream, _ = run_turn(chat, "401")
    assert status == "failed" and key not in stream.reason, stream.reason
    assert "Incorrect API key provided Received API Key = " in stream.reason  # the server's words stay


def test_the_key_of_an_llm_models_entry_is_masked_too(settings, leaky_openai, chat):
    entry = {
        "id": "qwen",
        "provider": "openai",
        "model": "gpt-fake",
        "base_url": leaky_openai.url,
        "api_key_env": "OLLAMA_API_KEY",
    }
    settings.LLM_MODELS = parse_llm_models(json.dumps([entry]), {"OLLAMA_API_KEY": LOCAL_KEY}, max_tokens=100)
    status, stream, _ = run_turn(chat, "401")
    assert status == "failed" and leaky_openai.requests[-1]["auth"] == "Bearer " + LOCAL_KEY
    assert LOCAL_KEY not in stream.reason and "Received API Key = …" in stream.reason, stream.reason


def test_a_failed_warms_last_error_masks_the_key(settings, leaky_openai, chat):
    settings.OPENAI_API_KEY = LOCAL_KEY
    Message.objects.create(chat=chat, role="user", content="401", status="complete")
    Message.objects.create(chat=chat, role="assistant", content="an earlier answer", status="complete")
    WarmingSchedule.objects.create(chat=chat)

    outcome = dispatch.warm_run(chat_id=chat.id, token=dispatch.claim_one(chat_id=chat.id))

    last_error = WarmingSchedule.objects.get(chat=chat).last_error
    assert outcome.outcome == "failed" and "Received API Key = …" in last_error, last_error
    assert LOCAL_KEY not in last_error


def test_provider_check_prints_the_failure_and_the_endpoint_with_the_key_masked(settings, capsys):
    server = fake_openai.FakeOpenAI(quirks={"echo_key", "wrong_key"})
    settings.LLM_PROVIDER, settings.LLM_MODEL, settings.LLM_MAX_RETRIES = "openai", "gpt-fake", 0
    settings.OPENAI_API_KEY = KEYS["a 32-hex key"]
    settings.OPENAI_BASE_URL = server.url + "?api_key=" + KEYS["a 32-hex key"]  # a key in the endpoint too
    try:
        with pytest.raises(SystemExit):
            call_command("provider_check")
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert KEYS["a 32-hex key"] not in out, out
    assert "api_key=…" in out and "FAILED: authentication failed" in out and "Received API Key = …" in out, out


def test_a_tool_servers_error_text_is_masked(settings):
    entry = {
        "name": "leaky",
        "command": sys.executable,
        "args": ["-m", "tests.support.leaky_tools"],
        "env": {"LEAKY_TOOLS_KEY": LOCAL_KEY, "PYTHONPATH": str(ROOT)},
    }
    settings.MCP_SERVERS = parse_servers(json.dumps([entry]))
    servers = ToolServers(settings.MCP_SERVERS)
    try:
        failed = servers.call("leaky", "fail", {}).result(20)
    finally:
        servers.close()
    assert failed.status == "error" and "fail: upstream refused key …: GET https://maps.example.com" in failed.content, failed
    for secret in (LOCAL_KEY, "AIzaSyUPSTREAM", "c2VjcmV0"):
        assert secret not in failed.content
    assert "key=…" in failed.content and "Bearer …" in failed.content


def test_a_log_line_that_names_a_key_is_masked(settings):
    """httpx logs each request's URL at INFO: an endpoint with ``?key=`` reached the log whole."""
    settings.OPENAI_API_KEY = LOCAL_KEY
    consoles = [h for h in logging.getLogger().handlers if isinstance(h.formatter, MaskingFormatter)]
    assert consoles, "the console handler of settings.LOGGING masks"
    try:
        raise RuntimeError(f"the server refused {LOCAL_KEY}")
    except RuntimeError:
        url = "https://x.example/v1?key=AIzaSyQ0123456789abcdefghijklmnopqrs"
        record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: POST %s "%s"', (url, "401"), sys.exc_info())
    line = consoles[0].formatter.format(record)
    assert "HTTP Request: POST https://x.example/v1?key=… " in line and "the server refused …" in line, line
    assert "AIzaSyQ" not in line and LOCAL_KEY not in line


# What a server said → what a reason shows of it.
SHAPES = [
    ("Incorrect API key provided: sk-proj-abcdefghijklmnop.", "Incorrect API key provided: sk-proj…."),
    ("Authorization: Bearer abc.def.ghi failed", "Authorization: Bearer … failed"),
    ("GET /v1beta/models?key=AIzaSyD0123456789abcdefghijklmnopqrst&alt=sse: 400", "GET /v1beta/models?key=…&alt=sse: 400"),
    ("API key not valid: AIzaSyD0123456789abcdefghijklmnopqrst", "API key not valid: AIza…"),
    ("invalid token=abc123def456 or api_key=zzz9", "invalid token=… or api_key=…"),
    ("key 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 revoked", "key … revoked"),
    ("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY refused", "secret … refused"),
    # Not secrets: a model's name, a path, a UUID, a request's short id.
    (
        "The model `Meta-Llama-3.1-70B-Instruct-GPTQ-INT4` does not exist; see docs/guides/error-codes/api-errors",
        "The model `Meta-Llama-3.1-70B-Instruct-GPTQ-INT4` does not exist; see docs/guides/error-codes/api-errors",
    ),
    ("stream 3f2b8c1e-8d4a-4f6e-9a3b-2c1d0e9f8a7b: req_42", "stream 3f2b8c1e-8d4a-4f6e-9a3b-2c1d0e9f8a7b: req_42"),
]


def test_a_providers_message_masks_keys_by_their_shape_and_leaves_the_rest():
    wrong = {said: provider_message(said) for said, shown in SHAPES if provider_message(said) != shown}
    assert not wrong, wrong
