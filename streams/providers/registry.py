"""The models this deployment offers: ``LLM_MODELS`` (checked when the settings load, see
``mothership.infra.llm_models``), or the one model of the shorthand ``LLM_PROVIDER`` / ``LLM_MODEL``.

Read at each call, so a change of the settings (a test's) is seen at once. The first model is
the default: a chat that names none, or a model no longer offered, uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from mothership.infra.llm_models import DEFAULT_BASE_URL_ENV, DEFAULT_KEY_ENV


@dataclass(frozen=True)
class ModelSpec:
    id: str
    provider: str  # "local" | "anthropic" | "openai"
    model: str  # the provider's name for it
    label: str
    base_url: str = ""
    api_key: str = ""
    max_tokens: int = 4096
    max_tokens_param: str = "max_tokens"  # openai: "max_tokens" or "max_completion_tokens" (reasoning models)
    prices: dict | None = None  # USD per million tokens; MOTHERSHIP_PRICES_JSON when None
    prompt_cache: bool = True  # the provider keeps a prompt cache (warming can help)
    prompt_cache_key: bool = False  # openai: send prompt_cache_key (the chat's id) for cache routing
    prefill: bool = False  # may continue from an assistant prefix
    images: bool = True  # reads image attachments
    documents: bool = False  # reads PDFs as documents (else it is sent their text)
    api_key_env: str = ""  # the environment variable its key was read from
    from_llm_models: bool = False  # an entry of LLM_MODELS (its id), not the shorthand LLM_PROVIDER / LLM_MODEL

    def key_hint(self) -> str:
        """Where a person fixes its key: the setting this model's key was read from."""
        if self.from_llm_models:
            return f"the key in {self.api_key_env}, the api_key_env of LLM_MODELS entry {self.id!r}"
        return self.api_key_env

    def endpoint_hint(self) -> str:
        """Where a person fixes the model's name and its endpoint."""
        if self.from_llm_models:
            return f"the model and base_url of LLM_MODELS entry {self.id!r}"
        return f"LLM_MODEL and {DEFAULT_BASE_URL_ENV.get(self.provider, 'its base URL')}"

    def public(self) -> dict:
        """What clients may see of it (no key, no endpoint)."""
        return {
            "id": self.id,
            "label": self.label,
            "provider": self.provider,
            "model": self.model,
            "prompt_cache": self.prompt_cache,
            "prefill": self.prefill,
            "images": self.images,
            "documents": self.documents,
        }


def _shorthand() -> ModelSpec:
    provider = settings.LLM_PROVIDER
    key, base_url = {
        "local": ("", ""),
        "anthropic": (settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL),
        "openai": (settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL),
    }[provider]
    return ModelSpec(
        id=settings.LLM_MODEL,
        provider=provider,
        model=settings.LLM_MODEL,
        label=settings.LLM_MODEL,
        base_url=base_url,
        api_key=key,
        max_tokens=settings.LLM_MAX_TOKENS,
        prefill=provider in ("local", "anthropic"),
        documents=provider in ("local", "anthropic"),
        api_key_env=DEFAULT_KEY_ENV.get(provider, ""),
    )


def models() -> list[ModelSpec]:
    entries = getattr(settings, "LLM_MODELS", None) or []
    if not entries:
        return [_shorthand()]
    return [ModelSpec(**entry, from_llm_models=True) for entry in entries]


def default_model() -> ModelSpec:
    return models()[0]


def model_get(model_id: str | None) -> ModelSpec | None:
    """The model with this id; None for an id this deployment does not offer."""
    return next((m for m in models() if m.id == model_id), None) if model_id else None


def model_for(model_id: str | None) -> ModelSpec:
    """The model a chat or a stream names, or the default when it names none or one no longer offered."""
    return model_get(model_id) or default_model()
