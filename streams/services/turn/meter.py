"""The meter: a turn's published output charged against its budget as it streams.

Output is charged as it is published, each frame once what is owed reaches 1/1000 of what the
budget has left (so a thousand turns at once could not overshoot it between charges), and at
least every 2 s (so the counters stay live, and a budget set meanwhile is heard). The frame
clock (``streams.frames.charge_frames``) sends the charges of all of a worker's turns at once.
"""

from __future__ import annotations

import logging
import time

import redis

from streams.models import Stream
from streams.providers.base import CHARS_PER_TOKEN
from streams.services.spending import TurnBudget

logger = logging.getLogger(__name__)

BUDGET = "budget"  # the reason of a turn stopped at its workspace's (or its member's) budget
TURNS_SHARING_THE_ROOM = 1000
CHARGE_AT_LEAST_EVERY = 2.0


class Meter:
    """What a turn has published and not yet charged; ``on_over_budget`` stops the turn."""

    def __init__(self, budget: TurnBudget | None, *, on_over_budget):
        self.budget = budget  # where this turn's spend counts (None: nowhere, as in some tests)
        self.on_over_budget = on_over_budget
        self.uncharged_chars = 0  # output published, not yet charged against the budget
        self.uncharged_deltas = 0  # the model's deltas in it (a token each, for some providers)
        self.delta_is_token = False
        # Charged once this much is owed (a share of what the budget has left), or every
        # CHARGE_AT_LEAST_EVERY seconds: every frame near the limit, rarely far from it.
        self.charge_from = 0.0
        self.charged_at = time.monotonic()

    def reserve_prompt(self, *, stream: Stream, history: list[dict]) -> bool:
        """The prompt's cost taken from the budget before the model is called. When it would cross
        it, the model is never called (nothing is billed) and the turn ends ``cancelled / budget``."""
        if self.budget is None:
            return True
        try:
            return self.budget.reserve_prompt(stream=stream, history=history)
        except redis.RedisError:  # the appends will say whether Redis is away; the seal charges it
            logger.warning("stream %s: its prompt was not counted against the budget", stream.pk, exc_info=True)
            return True

    def reserve_round(self, *, stream: Stream, messages: list[dict], cached: list[dict]) -> bool:
        """A model round after tool calls: its prompt (``messages``, of which ``cached`` was the
        previous round's, read from the provider's cache) taken from the budget before it is sent.
        False: it would cross it (the round is not sent)."""
        if self.budget is None:
            return True
        try:
            return self.budget.reserve_round(stream=stream, messages=messages, cached=cached)
        except redis.RedisError:  # as for the first round: the seal charges it
            logger.warning("stream %s: a round's prompt was not counted against the budget", stream.pk, exc_info=True)
            return True

    def published(self, text: str, deltas: int = 1) -> None:
        self.uncharged_chars += len(text)
        self.uncharged_deltas += deltas

    def take_charge(self):
        """The output published since the last charge, as (its live charge, nano-dollars), once it
        is due: when it reaches ``charge_from`` (a share of what the budget had left at the last
        charge), or ``CHARGE_AT_LEAST_EVERY`` seconds after it. None until then."""
        if self.budget is None or not self.uncharged_chars:
            return None
        tokens = self.uncharged_deltas if self.delta_is_token else -(-self.uncharged_chars // CHARS_PER_TOKEN)
        amount = self.budget.output_nanousd(tokens)
        if amount < self.charge_from and time.monotonic() - self.charged_at < CHARGE_AT_LEAST_EVERY:
            return None
        self.uncharged_chars = self.uncharged_deltas = 0
        return self.budget.live, amount

    def charged(self, *, past_budget: bool, room: int | None) -> None:
        """A charge's answer: stop at the budget, else when the next one is due. With
        ``TURNS_SHARING_THE_ROOM`` turns each owing at most that share of the room, together they
        cannot cross it between two charges; with no budget, only the clock makes it due."""
        self.charged_at = time.monotonic()
        self.charge_from = float("inf") if room is None else room / TURNS_SHARING_THE_ROOM
        if past_budget:
            self.on_over_budget()
