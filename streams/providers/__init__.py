from __future__ import annotations

from streams.providers.base import Provider, ProviderError, TextDelta, ToolCall, Usage
from streams.providers.registry import ModelSpec, default_model, model_for, model_get, models


def get_provider(model_id: str | None = None) -> Provider:
    """The provider of the model ``model_id`` names (the default model when None or not offered)."""
    spec = model_for(model_id)
    if spec.provider == "local":
        from streams.providers.local import LocalProvider

        return LocalProvider(spec=spec)
    if spec.provider == "anthropic":
        from streams.providers.anthropic_messages import AnthropicProvider

        return AnthropicProvider(spec)
    if spec.provider == "openai":
        from streams.providers.openai_compat import OpenAIProvider

        return OpenAIProvider(spec)
    raise ValueError(f"unknown provider {spec.provider!r}")


__all__ = [
    "ModelSpec",
    "Provider",
    "ProviderError",
    "TextDelta",
    "ToolCall",
    "Usage",
    "default_model",
    "get_provider",
    "model_for",
    "model_get",
    "models",
]
