"""Markdown to safe HTML on the server (the share page, readable with no script): markdown-it-py
with raw HTML off, then nh3 (the Ammonia sanitizer) over what it wrote, as the chat page does
with markdown-it and DOMPurify in the browser (static/mothership/markdown.js).

Links go only to the web or to mail, never into this app (a relative link is dropped to its text),
and open with no referrer; images become links (the Content-Security-Policy loads none from
elsewhere, and a shared page must not call out when read); table cells are aligned by class, and
a table scrolls in a box of its own. Task lists show disabled checkboxes in labels. Math
($…$, $$…$$, by pandoc's rule so "$5 and $10" stays text) is shown as its TeX, escaped, in a
``span.math`` (``div.math.math-display`` for a display block): the page runs no script, and
typesetting on the server would need a JavaScript engine.
"""

from __future__ import annotations

import functools
import re

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.tasklists import tasklists_plugin

_SCHEMES = ("http://", "https://", "mailto:")
_ALIGN = {"text-align:left": "md-align-left", "text-align:right": "md-align-right", "text-align:center": "md-align-center"}

_TAGS = {
    "p", "br", "hr", "em", "strong", "s", "del", "code", "pre", "blockquote", "a",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "div", "span", "label", "input",
}  # fmt: skip
_CLASSES = {
    **{tag: set(_ALIGN.values()) for tag in ("th", "td")},
    "div": {"table-scroll", "math", "math-display"},
    "span": {"math", "math-display"},
    "ul": {"contains-task-list"},
    "ol": {"contains-task-list"},
    "li": {"task-list-item"},
    "input": {"task-list-item-checkbox"},
}
# Only these values, and an input is always disabled (one forced attribute: nh3 writes forced
# ones in no fixed order).
_VALUES = {
    "div": {"tabindex": {"0"}, "role": {"group"}, "aria-label": {"Table"}},
    "input": {"type": {"checkbox"}, "checked": {"checked"}},
}
_FORCED = {"input": {"disabled": "disabled"}}


def _web_link(url: str) -> bool:
    return url.strip().lower().startswith(_SCHEMES)


def _image_as_link(renderer, tokens, idx, options, env) -> str:
    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = token.content or "image"
    if not _web_link(src):
        return escape(alt)
    return f'<a href="{escape(src)}">{escape(alt)}</a>'


def _align_by_class(state) -> None:
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrGet("style"):
            align = _ALIGN.get(str(token.attrGet("style")).replace(" ", ""))
            token.attrs.pop("style", None)
            if align:
                token.attrSet("class", align)


_TABLE_REGION = '<div class="table-scroll" tabindex="0" role="group" aria-label="Table">'


def _table_open(renderer, tokens, idx, options, env) -> str:
    return _TABLE_REGION + renderer.renderToken(tokens, idx, options, env)


def _table_close(renderer, tokens, idx, options, env) -> str:
    return renderer.renderToken(tokens, idx, options, env) + "</div>\n"


def _code(renderer, tokens, idx, options, env) -> str:
    """A code block's <pre> as a labelled group the keyboard can reach and scroll."""
    token = tokens[idx]
    language = (token.info.split() or [""])[0] if token.type == "fence" else ""
    label = f"Code: {language}" if language else "Code"
    html = getattr(RendererHTML, token.type)(renderer, tokens, idx, options, env)
    return html.replace("<pre>", f'<pre tabindex="0" role="group" aria-label="{escape(label)}">', 1)


def _math_inline(renderer, tokens, idx, options, env) -> str:
    return f'<span class="math">${escape(tokens[idx].content.strip())}$</span>'


def _math_inline_double(renderer, tokens, idx, options, env) -> str:
    return f'<span class="math math-display">$${escape(tokens[idx].content.strip())}$$</span>'


def _math_block(renderer, tokens, idx, options, env) -> str:
    return f'<div class="math math-display">$$\n{escape(tokens[idx].content.strip())}\n$$</div>\n'


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    if tag == "a" and name == "href":
        return value if _web_link(value) else None
    if tag == "pre" and name != "aria-label":
        return value if (name, value) in (("tabindex", "0"), ("role", "group")) else None
    return value


@functools.cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(["table", "strikethrough"])
    md.validateLink = _web_link
    md.add_render_rule("image", _image_as_link)
    md.core.ruler.push("align_by_class", _align_by_class)
    md.add_render_rule("table_open", _table_open)
    md.add_render_rule("table_close", _table_close)
    md.add_render_rule("fence", _code)
    md.add_render_rule("code_block", _code)
    # The chat's rules (static/mothership/markdown-math.js): no space inside, no digit outside.
    pandoc = {"allow_space": False, "allow_digits": False, "allow_labels": False, "allow_blank_lines": False}
    md.use(dollarmath_plugin, **pandoc, double_inline=True)
    md.add_render_rule("math_inline", _math_inline)
    md.add_render_rule("math_inline_double", _math_inline_double)
    md.add_render_rule("math_block", _math_block)
    md.use(tasklists_plugin, enabled=False, label=True)
    return md


@functools.cache
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes={"a": {"href"}, "pre": {"tabindex", "role", "aria-label"}},
        attribute_filter=_keep_attribute,
        allowed_classes=_CLASSES,
        tag_attribute_values=_VALUES,
        set_tag_attribute_values=_FORCED,
        link_rel="nofollow noopener noreferrer",
        url_schemes={"http", "https", "mailto"},
        strip_comments=True,
    )


# A reply stopped right after a heading's marker ("## ") leaves a heading with no words (as the page drops it).
_EMPTY_HEADING = re.compile(r"<h([1-6])>\s*</h\1>\n?")


def render_markdown(text: str) -> SafeString:
    """``text`` as sanitized HTML, safe to put in a template as it is."""
    return mark_safe(_EMPTY_HEADING.sub("", _cleaner().clean(_parser().render(text or ""))))
