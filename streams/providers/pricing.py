"""What tokens cost: USD per million tokens per model (an LLM_MODELS entry's ``prices``, else
``MOTHERSHIP_PRICES_JSON``), used for turns and for warms alike."""

from __future__ import annotations

from django.conf import settings

from streams.providers.base import Usage
from streams.providers.registry import models


def prices(model: str) -> dict[str, float]:
    """USD per million tokens for ``model``: its LLM_MODELS entry's prices, else ``MOTHERSHIP_PRICES``
    (``default`` when unlisted)."""
    listed = next((m.prices for m in models() if m.prices and model in (m.model, m.id)), None)
    if listed:
        return listed
    table = settings.MOTHERSHIP_PRICES
    return table.get(model) or table["default"]


def usage_cost(usage: Usage, model: str) -> float:
    p = prices(model)
    return (
        usage.input_tokens * p["input"]
        + usage.cache_read_tokens * p["cache_read"]
        + usage.cache_write_tokens * p["cache_write"]
        + usage.output_tokens * p["output"]
    ) / 1_000_000


def usage_cost_nanousd(usage: Usage, model: str) -> int:
    """``usage_cost`` in nano-dollars, exactly (the ledger's unit): USD per million tokens is
    nano-dollars per thousandth of a token."""
    p = prices(model)
    return round(
        (
            usage.input_tokens * p["input"]
            + usage.cache_read_tokens * p["cache_read"]
            + usage.cache_write_tokens * p["cache_write"]
            + usage.output_tokens * p["output"]
        )
        * 1000
    )
