"""Named API tokens' keys: how one looks, how it is stored (its SHA-256), and how a socket names it.

A key is ``msk_`` and 43 URL-safe characters (256 random bits), so a hash without salt is safe to
store and to look up by; DRF's one-per-user token (40 hex digits, ``POST /api/auth/token``) never
starts so, which is how ``Authorization: Token …`` tells the two apart. A socket opened with a
named token remembers ``sha256:<digest>`` (never the key: a socket ticket sits in Redis for a
minute), and ``mothership.access`` checks that the row still exists.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "msk_"
SHOWN_PREFIX = 12  # characters of the key the settings page shows to tell keys apart ("msk_" and 8)
DIGEST_MARK = "sha256:"


def key_new() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def is_named_key(key: str) -> bool:
    return key.startswith(KEY_PREFIX)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def digest_credential(digest: str) -> str:
    """What a socket authenticated by the named token with this digest remembers."""
    return DIGEST_MARK + digest


def credential_digest(credential: str | None) -> str | None:
    """The digest a socket's credential names, when it is a named token's; None for DRF's token."""
    if credential and credential.startswith(DIGEST_MARK):
        return credential[len(DIGEST_MARK) :]
    return None
