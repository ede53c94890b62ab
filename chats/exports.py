"""A chat as a file: Markdown (the branch shown, to read) and JSON (every branch, to import again).

Renders what ``selectors.chat_tree`` read; writes nothing. The JSON is the format
``chats.imports.mothership_json`` reads back.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid

from django.utils import timezone

from chats.attachments.service import size_words
from chats.models import Chat
from chats.selectors import ChatTree

EXPORT_FORMAT = "mothership.chat"
EXPORT_VERSION = 1
FILENAME_CHARS = 80

ROLE_HEADINGS = {"user": "User", "assistant": "Assistant"}

# Characters no file system takes in a name (Windows' set, the strictest), and control characters.
_UNSAFE = re.compile(r'\s*[\\/:*?"<>|][\\/:*?"<>|\s]*')
_SPACES = re.compile(r"[\s\x00-\x1f\x7f]+")


def export_filename(title: str, extension: str) -> str:
    """A file name from a chat's title that every system accepts: no separators, reserved
    characters or control characters, at most 80 characters; "chat" when nothing is left."""
    name = _UNSAFE.sub(" - ", _SPACES.sub(" ", title)).strip(" -.")
    name = name[:FILENAME_CHARS].rstrip(" -.") or "chat"
    return f"{name}.{extension}"


def export_json(*, chat: Chat, tree: ChatTree) -> bytes:
    document = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": timezone.now(),
        "id": chat.pk,
        "title": chat.title,
        "system_prompt": chat.system_prompt,
        "model_id": chat.model_id,
        "leaf_id": tree.leaf_id,
        "created_at": chat.created_at,
        "updated_at": chat.updated_at,
        "messages": [
            {
                "id": m.pk,
                "parent_id": tree.parents[m.pk],
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "created_at": m.created_at,
                "tool_calls": m.tool_calls,
                "usage": m.usage,
                "attachments": [_attachment(a) for a in tree.attachments.get(m.pk, [])],
            }
            for m in tree.messages
        ],
    }
    return json.dumps(document, default=_plain, ensure_ascii=False, indent=2).encode()


def _attachment(attachment) -> dict:
    """A file as the export lists it: what it was, never its bytes (an import leaves it out)."""
    return {
        "id": attachment.pk,
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "kind": attachment.kind,
    }


def _plain(value):
    # Times to the microsecond (DjangoJSONEncoder keeps milliseconds): messages a few µs apart keep their order.
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def export_markdown(*, chat: Chat, tree: ChatTree) -> str:
    lines = [f"# {chat.title}", ""]
    if chat.system_prompt:
        lines += ["## System prompt", "", chat.system_prompt, ""]
    for message in tree.branch():
        heading = ROLE_HEADINGS.get(message.role, message.role.title())
        if message.status != "complete":
            heading += f" ({message.status})"  # a reply stopped or failed: its text is what was kept
        lines += [f"## {heading}", "", message.content, ""]
        files = tree.attachments.get(message.pk, [])
        if files:
            lines += [f"Attached: {', '.join(f'{a.name} ({size_words(a.size)})' for a in files)}", ""]
    return "\n".join(lines)
