"""A message's attachments as each API takes them, and what a model may be sent.

A prompt's message carries its files as ``"attachments"`` (``chats.attachments.selectors``:
name, kind, type, size, the text read from it, the storage keys). Here they become parts:

- an image: an Anthropic ``image`` block, an OpenAI ``image_url`` part (a data URL), of the copy
  sized for the models;
- a PDF: an Anthropic ``document`` block or an OpenAI ``file`` part for a model that takes
  documents, else its text;
- a text file: its text, inline, with its name.

The parts come before the message's own words (Anthropic's advice for images), in upload order,
and are the same for a turn and for a warm of the same prefix.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict

from chats.attachments.storage import read_bytes

TRUNCATED = "[the rest of this file was cut: it is longer than a model is sent]"


def attachments_of(message: dict) -> list[dict]:
    return message.get("attachments") or []


def attachment_line(attachment: dict) -> str:
    """How the local model names a file it was sent: ``<name> (<size> bytes, <content_type>)``."""
    return f"{attachment['name']} ({attachment['size']} bytes, {attachment['content_type']})"


def attachment_tokens(message: dict) -> int:
    """What a message's files add to a prompt, estimated at upload."""
    return sum(a.get("tokens") or 0 for a in attachments_of(message))


def inline_text(attachment: dict) -> str:
    """A text file, or a PDF's text, as a model reads it: its name, then its text."""
    text = attachment.get("text") or ""
    if attachment.get("text_truncated"):
        text = f"{text}\n{TRUNCATED}"
    return f'<file name="{attachment["name"]}" type="{attachment["content_type"]}">\n{text}\n</file>'


CACHE_BYTES = 64 * 1024 * 1024
_cache: OrderedDict[str, str] = OrderedDict()
_cache_lock = threading.Lock()


def _base64_of(key: str, sha256: str) -> str:
    """A stored file's bytes as base64, the last few kept (at most ``CACHE_BYTES``): a warm and
    the turn after it send the same file, and the worker need not read it from storage twice."""
    name = f"{key}:{sha256}"
    with _cache_lock:
        if name in _cache:
            _cache.move_to_end(name)
            return _cache[name]
    data = base64.b64encode(read_bytes(key)).decode("ascii")
    with _cache_lock:
        _cache[name] = data
        while sum(len(v) for v in _cache.values()) > CACHE_BYTES and len(_cache) > 1:
            _cache.popitem(last=False)
    return data


def image_data(attachment: dict) -> tuple[str, str]:
    """The media type and base64 of the image's copy for the models."""
    return attachment["model_content_type"] or attachment["content_type"], _base64_of(
        attachment["model_key"] or attachment["key"], attachment["sha256"]
    )


def document_data(attachment: dict) -> str:
    return _base64_of(attachment["key"], attachment["sha256"])


def refusal(spec, attachments: list[dict]) -> str | None:
    """Why ``spec``'s model cannot be sent these files (a sentence naming it), or None."""
    for attachment in attachments:
        if attachment["kind"] == "image" and not spec.images:
            return f"The model {spec.label} cannot read images ({attachment['name']}); choose another model for this chat or remove the image."
        if attachment["kind"] == "pdf" and not spec.documents and not (attachment.get("text") or "").strip():
            return (
                f"The model {spec.label} reads PDFs only as their text, and {attachment['name']} has none (a scan?); "
                "choose a model that reads documents or remove it."
            )
    return None
