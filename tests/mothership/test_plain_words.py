"""Plain words on the pages: amounts too small for cents, and a tile's preview without Markdown."""

from __future__ import annotations

import pytest

from mothership.templatetags.money import dollars
from mothership.templatetags.plain import plain_text


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "–"), (0, "$0.00"), (0.00004, "< $0.0001"), (0.0001, "$0.0001"), (0.0063, "$0.0063"), (1.5, "$1.50")],
)
def test_an_amount_more_than_nothing_is_never_shown_as_zero(value, shown):
    assert dollars(value) == shown


@pytest.mark.parametrize(
    ("markdown", "text"),
    [
        (
            "## A rendered reply\n\nReplies render as **Markdown**, with `code`:",
            "A rendered reply Replies render as Markdown, with code:",
        ),
        ("- one\n- [x] two\n1. three\n> quoted", "one two three quoted"),
        ("See [the docs](https://example.com) and ![a chart](c.png).", "See the docs and a chart."),
        ("```python\nprint(1)\n```", "print(1)"),
        ("**_both_** and snake_case_name stay", "both and snake_case_name stay"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("", ""),
    ],
)
def test_a_tiles_preview_is_the_text_a_reader_sees(markdown, text):
    assert plain_text(markdown) == text
