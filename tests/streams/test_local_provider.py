"""The embedded ``local`` model keeps its rate against a clock, so a benchmark's offered load is exact."""

from __future__ import annotations

import threading
import time

import pytest

from streams.providers import TextDelta
from streams.providers.local import LocalProvider

pytestmark = pytest.mark.django_db

PROMPT = [{"role": "user", "content": "keep the rate"}]


def _deltas(provider, *, stall_after: int | None = None, stall: float = 0.0, stop=None) -> list[tuple[float, str]]:
    stop = stop or threading.Event()
    seen = []
    for item in provider.stream(messages=PROMPT, stop=stop):
        if isinstance(item, TextDelta):
            seen.append((time.monotonic(), item.text))
            if len(seen) == stall_after:
                time.sleep(stall)  # a consumer starved of CPU for a while
    return seen


def test_a_slow_consumer_does_not_slow_the_offered_rate():
    """Token k is due at t0 + k/rate: after a stall the model catches up instead of shifting every later token."""
    provider = LocalProvider(tokens_per_second=50, reply_tokens=25)  # 0.5 s of reply
    started = time.monotonic()
    seen = _deltas(provider, stall_after=5, stall=0.3)
    elapsed = seen[-1][0] - started
    # A sleep per token would take 0.5 + 0.3 s; the clock keeps it at 0.5 s (+ scheduling).
    assert 0.48 <= elapsed < 0.7, elapsed
    assert "".join(text for _, text in seen) == "".join(provider.reply_for(PROMPT))


def test_tokens_are_spaced_by_the_rate_not_sent_at_once():
    provider = LocalProvider(tokens_per_second=40, reply_tokens=8)
    started = time.monotonic()
    seen = _deltas(provider)
    # The k-th token never comes before its time.
    for k, (at, _text) in enumerate(seen, start=1):
        assert at - started >= k / 40 - 0.002, (k, at - started)


def test_a_stop_is_noticed_while_waiting_for_the_next_token():
    provider = LocalProvider(tokens_per_second=2, reply_tokens=10)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    seen = _deltas(provider, stop=stop)
    assert seen == []
    assert time.monotonic() - started < 0.4


def test_echo_answers_the_rest_of_the_message_verbatim_a_word_per_delta(chat, settings):
    import threading

    from streams.providers import TextDelta
    from streams.providers.local import LocalProvider
    from tests.support.turns import run_turn

    text = "# Title\n\n- **bold** item\n- `code`\n\n```python\nprint('x')\n```\n  trailing  "
    deltas = [
        i.text
        for i in LocalProvider(tokens_per_second=0).stream(
            messages=[{"role": "user", "content": "/echo " + text}], stop=threading.Event()
        )
        if isinstance(i, TextDelta)
    ]
    assert "".join(deltas) == text and len(deltas) == len(text.split()) + 1  # the trailing spaces too
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    status, _stream, message = run_turn(chat, "/echo " + text)
    assert status == "completed" and message.content == text


def test_the_local_model_answers_in_markdown_with_a_heading_a_list_and_a_code_block():
    """The offline default shows replies rendered: every part the UI renders is in its reply."""
    reply = "".join(LocalProvider(tokens_per_second=0, reply_tokens=200).reply_for(PROMPT))
    assert reply.startswith("## ")
    assert "\n\n- " in reply and "\n- " in reply.split("\n\n- ", 1)[1]  # a list of several items
    code = reply.split("```python\n", 1)[1].split("\n```", 1)[0]
    assert len(code.splitlines()) == 3 and all(" = " in line for line in code.splitlines())
    short = LocalProvider(tokens_per_second=0, reply_tokens=57).reply_for(PROMPT)
    assert len(short) == 57 == len("".join(short).split())  # a word per token, as many as asked for
