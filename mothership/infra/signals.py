"""Sending a signal whose receivers must never undo or block the sender's work."""

from __future__ import annotations

import logging

from django.dispatch import Signal

logger = logging.getLogger(__name__)


def send_logged(signal: Signal, *, sender, **kwargs) -> None:
    """``send_robust``, with each failing receiver logged (the sender's work is already saved)."""
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error("receiver %r of %r failed", receiver, kwargs, exc_info=result)
