"""Reads a ChatGPT data export's ``conversations.json``: a list of conversations, each a tree.

The structure followed is the published one of the export (as documented by
github.com/mitkury/chatgpt-export-parser, docs/chatgpt-data-export-format.md, and walked by
github.com/ArthurGareginyan/convonaut, script.js): a conversation has ``title``, ``create_time``
and ``update_time`` (epoch seconds), ``current_node`` (the leaf the user last saw) and
``mapping``: node id → ``{"id", "message": null | {"author": {"role"}, "create_time",
"content": {"content_type", "parts"}, "metadata"}, "parent", "children"}``. An edited question
or a regenerated reply is a node with several children.

Kept: user and assistant messages with text, in their tree (a message's parent is its nearest
kept ancestor). Left out: system and tool nodes, hidden ones (``is_visually_hidden_from_conversation``:
custom instructions), empty placeholders; non-text content (an image part, code sent to a tool)
is left out with a note.
"""

from __future__ import annotations

from collections import Counter

from chats.imports.drafts import DraftChat, DraftMessage, ImportRejected, check_acyclic, epoch_time, missing
from chats.models import UNTITLED, title_from

TITLE_MAX = 200
ROLES = ("user", "assistant")
TEXT_TYPES = ("text", "multimodal_text")


def is_chatgpt_export(data) -> bool:
    return isinstance(data, list)


def read(data: list) -> list[DraftChat]:
    if not data:
        raise ImportRejected("The file is a list with no conversation in it.")
    drafts = [_conversation(item, f"conversations[{i}]") for i, item in enumerate(data)]
    kept = [draft for draft in drafts if draft.messages]
    if not kept:
        raise ImportRejected("None of the file's conversations has a user or assistant message with text.")
    if len(kept) < len(drafts):
        kept[0].notes.append(f"{len(drafts) - len(kept)} conversation(s) with no user or assistant text left out.")
    return kept


def _conversation(item, path: str) -> DraftChat:
    if not isinstance(item, dict):
        raise ImportRejected(f"{path}: not an object (a conversation).")
    mapping = item.get("mapping")
    if mapping is None:
        raise missing(f"{path}.mapping")
    if not isinstance(mapping, dict):
        raise ImportRejected(f"{path}.mapping: not an object (node id → node).")
    title = item.get("title")
    if title is not None and not isinstance(title, str):
        raise ImportRejected(f"{path}.title: not a string.")
    created_at = epoch_time(item.get("create_time"), f"{path}.create_time")
    updated_at = epoch_time(item.get("update_time"), f"{path}.update_time")
    current = item.get("current_node")
    if current is not None and (not isinstance(current, str) or current not in mapping):
        raise ImportRejected(f"{path}.current_node: not a node id of its mapping.")

    parents: dict[str, str | None] = {}
    found: dict[str, DraftMessage] = {}
    skipped: Counter[str] = Counter()
    for key, node in mapping.items():
        where = f"{path}.mapping.{key}"
        if not isinstance(node, dict):
            raise ImportRejected(f"{where}: not an object (a node).")
        parent = node.get("parent")
        if parent is not None and (not isinstance(parent, str) or parent not in mapping):
            raise ImportRejected(f"{where}.parent: not a node id.")
        parents[key] = parent
        message = _message(node.get("message"), f"{where}.message", skipped)
        if message is not None:
            found[key] = DraftMessage(key=key, parent_key=None, **message)
    check_acyclic(parents, where=lambda key: f"{path}.mapping.{key}.parent")

    nearest = _nearest_kept(parents, kept=found.keys())
    for key, message in found.items():
        message.parent_key = nearest[parents[key]] if parents[key] is not None else None
    messages = list(found.values())
    name = (title or "").strip()[:TITLE_MAX]
    if not name and messages:
        first = min(messages, key=lambda m: (m.created_at is None, m.created_at))
        name = title_from(first.content)
    notes = []
    if skipped:
        parts = ", ".join(f"{count} {kind}" for kind, count in sorted(skipped.items()))
        notes.append(f"“{name or UNTITLED}” ({path}): left out {parts}.")
    return DraftChat(
        title=name or UNTITLED,
        messages=messages,
        leaf_key=nearest[current] if current is not None else None,
        created_at=created_at,
        updated_at=updated_at,
        notes=notes,
    )


def _message(message, path: str, skipped: Counter) -> dict | None:
    """A node's message as a draft's fields, or None when it is not imported (counted in
    ``skipped`` when it held content of a kind this app does not keep)."""
    if message is None:
        return None  # the root placeholder
    if not isinstance(message, dict):
        raise ImportRejected(f"{path}: not an object or null.")
    author = message.get("author")
    if author is None:
        raise missing(f"{path}.author")
    if not isinstance(author, dict) or not isinstance(author.get("role"), str):
        raise ImportRejected(f"{path}.author.role: not a string.")
    content = message.get("content")
    if content is None:
        raise missing(f"{path}.content")
    if not isinstance(content, dict) or not isinstance(content.get("content_type"), str):
        raise ImportRejected(f"{path}.content.content_type: not a string.")
    created_at = epoch_time(message.get("create_time"), f"{path}.create_time")
    metadata = message.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ImportRejected(f"{path}.metadata: not an object.")
    kind = content["content_type"]
    parts = content.get("parts")
    if kind in TEXT_TYPES and not isinstance(parts, list):
        raise ImportRejected(f"{path}.content.parts: not a list.")

    role = author["role"]
    if role not in ROLES or metadata.get("is_visually_hidden_from_conversation"):
        return None  # system and tool nodes, custom instructions: not part of the conversation shown
    if kind not in TEXT_TYPES:
        skipped[f"{kind} message(s)"] += 1
        return None
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        else:
            kind_of_part = part.get("content_type") if isinstance(part, dict) else None
            skipped[f"{kind_of_part if isinstance(kind_of_part, str) else 'non-text'} part(s)"] += 1
    text = "\n".join(t for t in texts if t)
    if not text.strip():
        return None  # an empty placeholder (a reply that never came, a message of images only)
    return {"role": role, "content": text, "created_at": created_at}


def _nearest_kept(parents: dict[str, str | None], *, kept) -> dict[str, str | None]:
    """Node id → itself when kept, else its nearest kept ancestor (None: none). The tree is acyclic."""
    kept = set(kept)
    nearest: dict[str, str | None] = {}
    for start in parents:
        path, at = [], start
        while at is not None and at not in nearest and at not in kept:
            path.append(at)
            at = parents[at]
        answer = at if at is None or at in kept else nearest[at]
        for node in path:
            nearest[node] = answer
    for key in kept:
        nearest[key] = key
    return nearest
