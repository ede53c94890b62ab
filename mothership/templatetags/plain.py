"""A message as a line of plain text (a tile's preview): its Markdown marks taken away."""

from __future__ import annotations

import re

from django import template

register = template.Library()

_FENCE = re.compile(r"^\s*(```|~~~).*$", re.M)  # a code block's fences (its code stays)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")  # [text](url) and images: their text
_LINE_MARKS = re.compile(r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+\[[ xX]\]\s+|[-*+]\s+|\d+[.)]\s+)", re.M)
_INLINE = re.compile(r"(\*\*|\*|~~|`)(?=\S)(.+?)(?<=\S)\1")
_UNDERSCORES = re.compile(r"(?<!\w)(__|_)(?=\S)(.+?)(?<=\S)\1(?!\w)")  # never inside a word: snake_case stays
_SPACE = re.compile(r"\s+")


@register.filter
def plain_text(value) -> str:
    """``value`` (Markdown) as one line of what a reader sees: no headings' #, list bullets,
    quotes' >, emphasis marks, backticks, fences or link targets."""
    text = _FENCE.sub("", str(value or ""))
    text = _LINK.sub(r"\1", text)
    text = _LINE_MARKS.sub("", text)
    for _ in range(2):  # nested emphasis: **_both_**
        text = _UNDERSCORES.sub(r"\2", _INLINE.sub(r"\2", text))
    return _SPACE.sub(" ", text).strip()
