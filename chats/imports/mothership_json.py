"""Reads this app's JSON export (``chats.exports.export_json``): one chat, every branch."""

from __future__ import annotations

import datetime

from django.utils.dateparse import parse_datetime

from chats.exports import EXPORT_FORMAT, EXPORT_VERSION
from chats.imports.drafts import DraftChat, DraftMessage, ImportRejected, check_acyclic, missing, usage_counts
from chats.models import SYSTEM_PROMPT_MAX, UNTITLED, Message, title_from

ROLES = {Message.Role.USER.value, Message.Role.ASSISTANT.value}
TITLE_MAX = 200
MODEL_ID_MAX = 64


def is_mothership_export(data) -> bool:
    return isinstance(data, dict) and data.get("format") == EXPORT_FORMAT


def read(data: dict) -> list[DraftChat]:
    version = data.get("version")
    if version != EXPORT_VERSION or isinstance(version, bool):
        raise ImportRejected(f"version: this app reads version {EXPORT_VERSION} of its export, not {version!r}.")
    title = _text(data, "title", required=True)
    system_prompt = _text(data, "system_prompt")
    if len(system_prompt) > SYSTEM_PROMPT_MAX:
        raise ImportRejected(f"system_prompt: longer than {SYSTEM_PROMPT_MAX} characters.")
    model_id = _text(data, "model_id")
    if len(model_id) > MODEL_ID_MAX:
        raise ImportRejected(f"model_id: longer than {MODEL_ID_MAX} characters.")
    rows = data.get("messages")
    if rows is None:
        raise missing("messages")
    if not isinstance(rows, list):
        raise ImportRejected("messages: not a list.")

    messages = [_message(row, f"messages[{i}]") for i, row in enumerate(rows)]
    where = {}
    for i, message in enumerate(messages):
        if message.key in where:
            raise ImportRejected(f"messages[{i}].id: {message.key!r} appears twice.")
        where[message.key] = f"messages[{i}]"
    for i, message in enumerate(messages):
        if message.parent_key is not None and message.parent_key not in where:
            raise ImportRejected(f"messages[{i}].parent_id: not the id of a message in this file.")
    check_acyclic({m.key: m.parent_key for m in messages}, where=lambda key: f"{where[key]}.parent_id")
    leaf = data.get("leaf_id")
    if leaf is not None and (not isinstance(leaf, str) or leaf not in where):
        raise ImportRejected("leaf_id: not the id of a message in this file.")

    title = title.strip()[:TITLE_MAX]
    if not title:
        first = min(messages, key=lambda m: m.created_at, default=None)
        title = title_from(first.content) if first else UNTITLED
    files = sum(_attached_count(row, f"messages[{i}]") for i, row in enumerate(rows))
    return [
        DraftChat(
            title=title,
            messages=messages,
            leaf_key=leaf,
            system_prompt=system_prompt,
            model_id=model_id,
            created_at=_time(data.get("created_at"), "created_at", required=False),
            updated_at=_time(data.get("updated_at"), "updated_at", required=False),
            # The export lists files without their bytes: the messages come back, the files do not.
            notes=[f"{files} attached {'file was' if files == 1 else 'files were'} not imported."] if files else [],
        )
    ]


def _attached_count(row: dict, path: str) -> int:
    attached = row.get("attachments")
    if attached is None:
        return 0
    if not isinstance(attached, list):
        raise ImportRejected(f"{path}.attachments: not a list.")
    return len(attached)


def _message(row, path: str) -> DraftMessage:
    if not isinstance(row, dict):
        raise ImportRejected(f"{path}: not an object.")
    key = row.get("id")
    if key is None:
        raise missing(f"{path}.id")
    if not isinstance(key, str) or not key:
        raise ImportRejected(f"{path}.id: not a string.")
    if "parent_id" not in row:
        raise missing(f"{path}.parent_id")
    parent = row["parent_id"]
    if parent is not None and not isinstance(parent, str):
        raise ImportRejected(f"{path}.parent_id: not the id of a message in this file.")
    role = row.get("role")
    if role not in ROLES:
        raise ImportRejected(f"{path}.role: {role!r} is not user or assistant.")
    content = _text(row, "content", required=True, path=path)
    tool_calls = row.get("tool_calls") or []
    if not isinstance(tool_calls, list) or not all(isinstance(call, dict) for call in tool_calls):
        raise ImportRejected(f"{path}.tool_calls: not a list of objects.")
    return DraftMessage(
        key=key,
        parent_key=parent,
        role=role,
        content=content,
        created_at=_time(row.get("created_at"), f"{path}.created_at", required=True),
        tool_calls=tool_calls,
        usage=usage_counts(row.get("usage"), f"{path}.usage"),
    )


def _text(data: dict, name: str, *, required: bool = False, path: str = "") -> str:
    where = f"{path}.{name}" if path else name
    value = data.get(name)
    if value is None:
        if required:
            raise missing(where)
        return ""
    if not isinstance(value, str):
        raise ImportRejected(f"{where}: not a string.")
    return value


def _time(value, path: str, *, required: bool) -> datetime.datetime | None:
    if value is None:
        if required:
            raise missing(path)
        return None
    try:
        moment = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise ImportRejected(f"{path}: not a time (ISO 8601, as the export writes it).")
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
