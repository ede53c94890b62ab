from __future__ import annotations

import pytest


@pytest.fixture
def inline_turns(turns_not_enqueued, settings):
    """Turns run inline in the test with an instant local model (every delta its own frame)."""
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 10
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0
