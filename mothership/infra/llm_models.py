"""``LLM_MODELS``: the models an operator offers, read and checked once, when the settings load.

A JSON list; each entry names one model of one provider::

    [{"id": "local", "provider": "local"},
     {"id": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5", "label": "Claude Sonnet"},
     {"id": "qwen", "provider": "openai", "model": "qwen2.5:7b", "base_url": "http://127.0.0.1:11434/v1",
      "api_key_env": "OLLAMA_API_KEY", "max_tokens_param": "max_tokens"}]

The first entry is the default. Pure Python (the settings import it): a mistake raises
``ValueError`` with a sentence naming the entry and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

PROVIDERS = ("local", "anthropic", "openai")
DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
DEFAULT_BASE_URL_ENV = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL"}
MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")
PRICE_FIELDS = ("input", "cache_read", "cache_write", "output")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_FIELDS = {
    "id",
    "provider",
    "model",
    "label",
    "base_url",
    "api_key_env",
    "max_tokens",
    "max_tokens_param",
    "prices",
    "prompt_cache",
    "prompt_cache_key",
    "prefill",
    "images",
    "documents",
}


def check_base_url(url: str, *, provider: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where} must be an http:// or https:// URL with a host (got {url!r}).")
    if provider == "anthropic" and parts.path.rstrip("/").endswith("/v1"):
        raise ValueError(f"{where} must not end in /v1: the SDK adds /v1/messages (got {url!r}).")


def _entry(raw, index: int, environ: Mapping[str, str], max_tokens: int) -> dict:
    where = f"LLM_MODELS[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object with at least id and provider.")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ValueError(f"{where} has unknown fields {unknown}; known: {sorted(_FIELDS)}.")
    model_id = raw.get("id")
    if not isinstance(model_id, str) or not _ID.match(model_id):
        raise ValueError(f"{where}.id must be 1–64 letters, digits, '.', '_', ':' or '-' (got {model_id!r}).")
    where = f"LLM_MODELS entry {model_id!r}"
    provider = raw.get("provider")
    if provider not in PROVIDERS:
        raise ValueError(f"{where}: provider must be one of {', '.join(PROVIDERS)} (got {provider!r}).")
    model = raw.get("model", "mothership-local-1" if provider == "local" else None)
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"{where}: model must name the provider's model.")
    entry = {
        "id": model_id,
        "provider": provider,
        "model": model.strip(),
        "label": raw.get("label") or model_id,
        "base_url": "",
        "api_key": "",
        "api_key_env": "",
        "max_tokens": raw.get("max_tokens", max_tokens),
        "max_tokens_param": raw.get("max_tokens_param", "max_tokens"),
        "prices": raw.get("prices"),
        "prompt_cache": raw.get("prompt_cache", True),
        "prompt_cache_key": raw.get("prompt_cache_key", False),
        "prefill": raw.get("prefill", provider in ("local", "anthropic")),
        # What attachments it reads: images (Anthropic image blocks, OpenAI image_url parts), and
        # PDFs as documents (Anthropic document blocks, OpenAI file parts); else a PDF's text.
        "images": raw.get("images", True),
        "documents": raw.get("documents", provider in ("local", "anthropic")),
    }
    if not isinstance(entry["label"], str):
        raise ValueError(f"{where}: label must be a string.")
    if isinstance(entry["max_tokens"], bool) or not isinstance(entry["max_tokens"], int) or entry["max_tokens"] < 1:
        raise ValueError(f"{where}: max_tokens must be a whole number of at least 1.")
    if entry["max_tokens_param"] not in MAX_TOKENS_PARAMS:
        raise ValueError(f"{where}: max_tokens_param must be one of {', '.join(MAX_TOKENS_PARAMS)}.")
    for flag in ("prompt_cache", "prompt_cache_key", "prefill", "images", "documents"):
        if not isinstance(entry[flag], bool):
            raise ValueError(f"{where}: {flag} must be true or false.")
    prices = entry["prices"]
    if prices is not None:
        if not isinstance(prices, dict) or sorted(prices) != sorted(PRICE_FIELDS):
            raise ValueError(f"{where}: prices must give exactly {', '.join(PRICE_FIELDS)} (USD per million tokens).")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in prices.values()):
            raise ValueError(f"{where}: prices must be numbers of at least 0.")
    if provider != "local":
        key_env = raw.get("api_key_env", DEFAULT_KEY_ENV[provider])
        if not isinstance(key_env, str) or not key_env:
            raise ValueError(f"{where}: api_key_env must name an environment variable.")
        entry["api_key_env"], entry["api_key"] = key_env, environ.get(key_env, "").strip()
        if not entry["api_key"]:
            hint = " (any value for a local server that does not check it)" if provider == "openai" else ""
            raise ValueError(f"{where}: the environment variable {key_env} must hold its API key{hint}.")
        base_url = raw.get("base_url", environ.get(DEFAULT_BASE_URL_ENV[provider], "").strip())
        if base_url:
            if not isinstance(base_url, str):
                raise ValueError(f"{where}: base_url must be a string.")
            check_base_url(base_url, provider=provider, where=f"{where}: base_url")
        entry["base_url"] = base_url or ""
    return entry


def parse_llm_models(raw: str, environ: Mapping[str, str], *, max_tokens: int) -> list[dict]:
    """The checked entries of ``LLM_MODELS`` (empty when it is unset)."""
    if not raw.strip():
        return []
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"LLM_MODELS must be a JSON list of models: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError("LLM_MODELS must be a non-empty JSON list of models.")
    models = [_entry(item, i, environ, max_tokens) for i, item in enumerate(entries)]
    ids = [m["id"] for m in models]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"LLM_MODELS ids must be unique; repeated: {duplicates}.")
    return models
