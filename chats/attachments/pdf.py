"""A PDF's text (pypdf), for the models that take no documents and for the token estimate."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError

logger = logging.getLogger(__name__)

# Anthropic reads each page as an image and as its text: about 1,500 to 3,000 tokens a page.
TOKENS_PER_PAGE = 1500


class BadPdf(Exception):
    """A PDF pypdf cannot open (damaged, cut short, or encrypted)."""


@dataclass(frozen=True)
class PdfText:
    text: str
    pages: int
    truncated: bool


def pdf_text(source, *, keep: int) -> PdfText:
    """The text of the PDF in ``source`` (a file object), page after page, up to ``keep`` characters."""
    try:
        reader = PdfReader(source)
        if reader.is_encrypted:
            raise BadPdf("The PDF is encrypted; attach one without a password.")
        pages = len(reader.pages)
        parts, kept, truncated = [], 0, False
        for number, page in enumerate(reader.pages, start=1):
            if kept >= keep:
                truncated = True
                break
            try:
                text = page.extract_text() or ""
            except Exception:  # one page's text the library cannot read: the others still count
                logger.warning("PDF page %d: its text could not be read", number)
                text = ""
            piece = f"[page {number}]\n{text.strip()}\n"
            parts.append(piece[: keep - kept])
            truncated = truncated or len(piece) > keep - kept
            kept += len(parts[-1])
    except (PdfReadError, PyPdfError, ValueError, KeyError, OSError) as exc:
        raise BadPdf("The PDF could not be read (is it damaged or cut short?).") from exc
    return PdfText("".join(parts).strip(), pages, truncated)
