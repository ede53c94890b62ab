"""What a file is, from its bytes: the types an attachment may be, and nothing else.

The name only chooses among text types (``notes.md`` is Markdown, ``data.csv`` CSV); it never
makes bytes an image or a PDF, and a client's ``Content-Type`` is not read at all. A file is
text when all of it is UTF-8 (a BOM allowed) with no NUL and few control characters: an
executable renamed ``.txt`` is refused. HTML and SVG are text too, kept as ``text/plain``: they
are never served as pages.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass

IMAGE_TYPES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}
PDF = "application/pdf"

# Text types by the name's ending; any other text is text/plain (source code included).
_TEXT_BY_EXTENSION = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".json": "application/json",
}

SUPPORTED = "PNG, JPEG, GIF or WebP images, PDF, or UTF-8 text (plain, Markdown, CSV, JSON, source code)"


@dataclass(frozen=True)
class Kind:
    kind: str  # "image" | "pdf" | "text"
    content_type: str


def sniff(head: bytes) -> Kind | None:
    """An image or a PDF by its magic bytes; None for anything else (maybe text: ``TextCheck``)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Kind("image", "image/png")
    if head.startswith(b"\xff\xd8\xff"):
        return Kind("image", "image/jpeg")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return Kind("image", "image/gif")
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Kind("image", "image/webp")
    if head.lstrip(b"\r\n\t ")[:5] == b"%PDF-":
        return Kind("pdf", PDF)
    return None


def text_type(name: str) -> str:
    return _TEXT_BY_EXTENSION.get(os.path.splitext(name)[1].lower(), "text/plain")


# Control characters other than tab, line feed, form feed and carriage return.
_CONTROL = bytes(sorted(frozenset(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D}))
MAX_CONTROL_SHARE = 0.01


class TextCheck:
    """Fed a file's chunks in order: whether all of it is text (UTF-8, no NUL, few controls),
    and its first ``keep`` characters (what a model reads of it)."""

    def __init__(self, *, keep: int):
        self.keep = keep
        self.ok = True
        self.chars: list[str] = []
        self.kept = 0
        self.truncated = False
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self._controls = 0
        self._seen = 0

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        if not self.ok:
            return
        if b"\x00" in chunk:
            self.ok = False
            return
        # Counted in C (what translate deletes): a byte-by-byte loop cost ~0.9 s of CPU per 20 MB.
        self._controls += len(chunk) - len(chunk.translate(None, _CONTROL))
        self._seen += len(chunk)
        try:
            text = self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError:
            self.ok = False
            return
        if self.kept < self.keep:
            piece = text[: self.keep - self.kept]
            self.chars.append(piece)
            self.kept += len(piece)
            self.truncated = self.truncated or len(piece) < len(text)
        elif text:
            self.truncated = True

    def finish(self) -> bool:
        self.feed(b"", final=True)
        return self.ok and self._controls <= MAX_CONTROL_SHARE * max(1, self._seen)

    @property
    def text(self) -> str:
        return "".join(self.chars).replace("\r\n", "\n")
