"""Delta frames: the first delta at once, then one frame per tick per turn, one round trip per tick for all turns."""

from __future__ import annotations

import pytest

from streams import eventlog, events
from streams.providers.local import LocalProvider
from streams.services import stream_run, stream_start
from tests.factories import ChatFactory
from tests.support.threads import app_thread

pytestmark = pytest.mark.django_db(transaction=True)

RATE, TOKENS, FLUSH_MS = 400, 60, 50  # 0.15 s of reply: about three ticks


@pytest.fixture(autouse=True)
def framed_model(settings, turns_not_enqueued):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = RATE
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = TOKENS
    settings.MOTHERSHIP_DELTA_FLUSH_MS = FLUSH_MS


def _reply(content: str) -> str:
    return "".join(LocalProvider(tokens_per_second=0, reply_tokens=TOKENS).reply_for([{"role": "user", "content": content}]))


def test_the_first_delta_goes_out_alone_and_the_rest_in_frames(chat):
    turn = stream_start(chat=chat, content="frame me")
    assert stream_run(stream_id=turn.stream.id) == "completed"
    log = eventlog.read(turn.stream.id)
    deltas = [e["text"] for e in log if e["type"] == events.DELTA]
    first_token = LocalProvider(tokens_per_second=0, reply_tokens=1).reply_for([{"role": "user", "content": "frame me"}])[0]
    assert deltas[0] == first_token  # the reply starts on screen with its first token
    # 60 tokens over ~0.15 s at a 50 ms clock: a handful of frames, not 60.
    assert 2 <= len(deltas) <= 8, deltas
    assert "".join(deltas) == _reply("frame me")
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert log[-1]["type"] == events.COMPLETED


def test_live_turns_share_one_append_round_trip_per_tick(monkeypatch):
    batches = []
    original = eventlog.append_many

    def recording(items):
        batches.append(len(items))
        return original(items)

    monkeypatch.setattr(eventlog, "append_many", recording)
    turns = [stream_start(chat=ChatFactory(), content=f"turn {i}") for i in range(4)]
    results = {}
    threads = [app_thread(lambda t=t: results.setdefault(t.stream.id, stream_run(stream_id=t.stream.id))) for t in turns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert set(results.values()) == {"completed"}
    assert max(batches) > 1  # the frames of several turns went to Redis together
    for turn in turns:
        log = eventlog.read(turn.stream.id)
        assert eventlog.snapshot_text(log) == _reply(turn.user_message.content)
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
