"""Markdown to safe HTML on the server (the share page, readable with no script): markdown-it-py
with raw HTML off, then nh3 (the Ammonia sanitizer) over what it wrote, as the chat page does
with markdown-it and DOMPurify in the browser (static/mothership/markdown.js).

Links go only to the web or to mail, never into this app (a relative link is dropped to its text),
and open with no referrer; images become links (the Content-Security-Policy loads none from
elsewhere, and a shared page must not call out when read); table cells are aligned by class.
"""

from __future__ import annotations

import functools

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_SCHEMES = ("http://", "https://", "mailto:")
_ALIGN = {"text-align:left": "md-align-left", "text-align:right": "md-align-right", "text-align:center": "md-align-center"}

_TAGS = {
    "p", "br", "hr", "em", "strong", "s", "del", "code", "pre", "blockquote", "a",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_CLASSES = {tag: set(_ALIGN.values()) for tag in ("th", "td")}


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


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    if tag == "a" and name == "href":
        return value if _web_link(value) else None
    return value


@functools.cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(["table", "strikethrough"])
    md.validateLink = _web_link
    md.add_render_rule("image", _image_as_link)
    md.core.ruler.push("align_by_class", _align_by_class)
    return md


@functools.cache
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes={"a": {"href"}},
        attribute_filter=_keep_attribute,
        allowed_classes=_CLASSES,
        link_rel="nofollow noopener noreferrer",
        url_schemes={"http", "https", "mailto"},
        strip_comments=True,
    )


def render_markdown(text: str) -> SafeString:
    """``text`` as sanitized HTML, safe to put in a template as it is."""
    return mark_safe(_cleaner().clean(_parser().render(text or "")))
