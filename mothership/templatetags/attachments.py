"""A message's files as the chat page shows them, the same rules as static/mothership/files.js:
a thumbnail's box (the image's shape, scaled down to fit 240 × 180, never up) and the kind in words."""

from __future__ import annotations

from django import template

register = template.Library()

PREVIEW_WIDTH, PREVIEW_HEIGHT = 240, 180
BADGES = {"image": "IMG", "pdf": "PDF", "text": "TXT"}


@register.filter
def preview_box(file: dict) -> dict:
    width, height = file.get("width") or PREVIEW_WIDTH, file.get("height") or PREVIEW_HEIGHT
    scale = min(1, PREVIEW_WIDTH / width, PREVIEW_HEIGHT / height)
    # floor(x + .5): JavaScript's Math.round, so the page and a live bubble agree to the pixel
    return {"width": max(1, int(width * scale + 0.5)), "height": max(1, int(height * scale + 0.5))}


@register.filter
def kind_words(file: dict) -> str:
    if file.get("kind") == "pdf":
        pages = file.get("pages")
        return f"PDF, {pages} page{'' if pages == 1 else 's'}" if pages else "PDF"
    return "image" if file.get("kind") == "image" else "text"


@register.filter
def kind_badge(file: dict) -> str:
    return BADGES.get(file.get("kind"), "FILE")
