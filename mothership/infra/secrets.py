"""Secrets masked out of text that came from elsewhere: a provider's or a tool server's error,
before it reaches a turn's reason, a warm's ``lastError``, a tool's error, a command's output or a
log line.

By value: every secret this deployment is configured with (``configured_secrets``), wherever it
appears. By shape: ``sk-…`` keys, this app's ``msk_…`` API tokens, ``Bearer …``, ``key=`` /
``api_key=`` / ``token=`` / ``ticket=`` / ``sessionid=``-style query parameters and cookies,
Google's ``AIza…`` keys, and long hex or base64-like tokens (32 characters or more: DRF's
40-hex-digit tokens among them).
A masked key keeps at most the few characters that name its kind (``sk-proj…``), never enough to
use it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings

MASK = "…"
# Shorter values are left to the shapes: masking every "x" or "demo" would garble ordinary words.
MIN_SECRET_CHARS = 8

_SK_KEY = r"\b(?P<sk>sk-[A-Za-z0-9_-]{4})(?!…)[A-Za-z0-9_*-]*"  # (?!…): masking twice changes nothing
_NAMED_TOKEN = r"\b(?P<msk>msk_)(?!…)[A-Za-z0-9_-]+"  # this app's named API tokens (mothership.tokens)
_BEARER = r"\b(?P<bearer>Bearer\s+)[^\s\"',;]+"
_QUERY = (
    r"(?P<param>\b(?:api[_-]?key|key|access[_-]?token|token|ticket|secret|password|sig|signature"
    r"|sessionid|csrftoken|csrfmiddlewaretoken)=)"
    r"[^\s&#\"',;]+"
)
_GOOGLE = r"\b(?P<google>AIza)[0-9A-Za-z_-]{20,}"
_HEX = r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Fa-f])"
_SHAPES = re.compile("|".join((_SK_KEY, _NAMED_TOKEN, _BEARER, _QUERY, _GOOGLE, _HEX)), re.IGNORECASE)
# A run of the base64 / base64url alphabet (after the shapes above had their say, so that a key
# inside a run is masked whatever the run is); ``_looks_random`` decides whether it is a token.
_BASE64ISH = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/_=-])")
_SEPARATORS = re.compile(r"[-_/]")


def _looks_random(token: str) -> bool:
    """A key, not a path or a model's name (``Meta-Llama-3-70B-Instruct``, ``docs/guides/…``): it
    mixes digits with both cases and has a long stretch without a separator."""
    return (
        any(c.isdigit() for c in token)
        and any(c.islower() for c in token)
        and any(c.isupper() for c in token)
        and max(len(part) for part in _SEPARATORS.split(token)) >= 16
    )


def _by_shape(match: re.Match) -> str:
    for group in ("sk", "msk", "bearer", "param", "google"):
        if match.group(group):
            return match.group(group) + MASK
    return MASK  # a long hex run


def mask_shapes(text: str) -> str:
    """``text`` with every key-shaped token masked (configured values left to ``mask_values``)."""
    text = _SHAPES.sub(_by_shape, text)
    return _BASE64ISH.sub(lambda m: MASK if _looks_random(m.group(0)) else m.group(0), text)


def configured_secrets() -> list[str]:
    """Every secret value the settings hold: the models' keys, the tool servers' ``env`` and
    ``headers`` values, the metrics token, the mail and database passwords, ``SECRET_KEY``."""
    values: list[str] = [
        getattr(settings, "ANTHROPIC_API_KEY", ""),
        getattr(settings, "OPENAI_API_KEY", ""),
        getattr(settings, "MOTHERSHIP_METRICS_TOKEN", ""),
        getattr(settings, "EMAIL_HOST_PASSWORD", ""),
        settings.SECRET_KEY,
    ]
    values += [entry.get("api_key", "") for entry in getattr(settings, "LLM_MODELS", None) or ()]
    for server in getattr(settings, "MCP_SERVERS", None) or ():
        values += list((server.env or {}).values()) + list((server.headers or {}).values())
        values.append(urlsplit(server.url).password or "" if server.url else "")
    for url in (getattr(settings, "DATABASE_URL", ""), getattr(settings, "REDIS_URL", "")):
        values.append(urlsplit(url).password or "" if url else "")
    return [v for v in values if isinstance(v, str)]


@functools.lru_cache(maxsize=8)
def _value_pattern(values: tuple[str, ...]) -> re.Pattern | None:
    if not values:
        return None
    # Longest first: a key that contains another is masked whole.
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


def _value_mask(value: str) -> str:
    """What a configured secret becomes: what its shape keeps (``Bearer …``, ``sk-proj…``), else nothing."""
    shaped = mask_shapes(value)
    return shaped if shaped != value and len(shaped) < len(value) // 2 + 2 else MASK


def mask_values(text: str, values: Iterable[str] | None = None) -> str:
    """``text`` with every configured secret (or each of ``values``) masked; shapes left alone."""
    wanted = tuple(
        sorted({v.strip() for v in (configured_secrets() if values is None else values) if len(v.strip()) >= MIN_SECRET_CHARS})
    )
    pattern = _value_pattern(wanted)
    return pattern.sub(lambda m: _value_mask(m.group(0)), text) if pattern else text


def mask(text: str) -> str:
    """``text`` with every secret masked: the configured ones by value, then keys by shape."""
    if not text:
        return text
    return mask_shapes(mask_values(text))


class MaskingFormatter(logging.Formatter):
    """The log's formatter: each line (and its traceback) with secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))
