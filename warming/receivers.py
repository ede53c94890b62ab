"""Receivers of lower apps' signals, connected in ``WarmingConfig.ready()``: each one service call."""

from __future__ import annotations

from warming.dispatch import warming_on_turn_sealed


def on_turn_sealed(sender, *, chat_id, sealed_at, **kwargs) -> None:
    warming_on_turn_sealed(chat_id=chat_id, sealed_at=sealed_at)  # next warm: sealed_at + interval
