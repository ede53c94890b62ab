from __future__ import annotations

from django.conf import settings

from streams.providers.base import Provider, ProviderError, TextDelta, Usage


def get_provider() -> Provider:
    if settings.LLM_PROVIDER == "local":
        from streams.providers.local import LocalProvider

        return LocalProvider()
    if settings.LLM_PROVIDER == "anthropic":
        from streams.providers.anthropic_messages import AnthropicProvider

        return AnthropicProvider()
    if settings.LLM_PROVIDER == "openai":
        from streams.providers.openai_compat import OpenAIProvider

        return OpenAIProvider()
    raise ValueError(f"unknown LLM_PROVIDER {settings.LLM_PROVIDER!r}")


__all__ = ["Provider", "ProviderError", "TextDelta", "Usage", "get_provider"]
