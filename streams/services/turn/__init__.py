"""One turn in the worker, in parts a newcomer can read one at a time.

- ``heartbeat``: keeps the chat's liveness lock while the turn runs; fences the turn that lost it.
- ``journal``: every event of the turn, in seq order, in its fenced event log (frames, Redis
  outages, text held for the seal, what the seal writes back).
- ``meter``: what the turn's published output costs, charged against its budget as it goes.
- ``turn``: the turn itself: the model's rounds, a stop, and what the seal saves.

``streams.services.run`` claims a queued stream, runs a ``Turn`` and seals it.
"""

from streams.services.turn.heartbeat import Heartbeat
from streams.services.turn.journal import Journal, RedisLost
from streams.services.turn.meter import BUDGET, Meter
from streams.services.turn.turn import Turn

__all__ = ["BUDGET", "Heartbeat", "Journal", "Meter", "RedisLost", "Turn"]
