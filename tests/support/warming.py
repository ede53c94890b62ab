"""Proving a negative with real beat: "no warm happened" is read only after beat warmed another chat."""

from __future__ import annotations

import time

from chats.models import Chat
from tests import factories
from warming.models import WarmingSchedule
from warming.services import warming_update


def warming_witness(*, workspace_id, interval: int) -> Chat:
    """A chat with a prefix to cache, warmed every ``interval`` s: its warms show that beat and a worker run."""
    witness = factories.ChatFactory(workspace_id=workspace_id, title="witness")
    factories.StreamFactory(chat=witness, user_message__content="a prefix to keep warm", assistant_message__content="kept")
    warming_update(chat=witness, enabled=True, interval_seconds=interval)
    return witness


def wait_until_warmed_after(witness: Chat, moment: float, timeout: float = 15) -> None:
    """Wait until ``witness`` has been warmed after ``moment`` (epoch s): every schedule due by then was dispatched."""
    deadline = time.monotonic() + timeout
    while True:
        last = WarmingSchedule.objects.filter(chat=witness).values_list("last_warm_at", flat=True).first()
        if last is not None and last.timestamp() > moment:
            return
        assert time.monotonic() < deadline, "beat warmed nothing: whether a warm was refused cannot be told"
        time.sleep(0.1)
