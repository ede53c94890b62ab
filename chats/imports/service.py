"""``chat_import``: a file checked whole, then every conversation in it written in one transaction."""

from __future__ import annotations

import datetime
import json
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chats.imports import chatgpt, mothership_json
from chats.imports.drafts import DraftChat, ImportRejected, ImportTooLarge
from chats.models import Chat, ChatImport, Message, Workspace
from chats.signals import chat_created
from mothership.infra.signals import send_logged

BATCH = 500
# New tiles pushed to open dashboards per import: a large export appears on their next read instead.
TILES_PUSHED = 20
ACCEPTED = (
    "this app's JSON export of a chat (GET /api/mothership/chats/<id>/export?format=json) "
    "or a ChatGPT conversations.json (a list of conversations, from ChatGPT's data export)"
)
_TICK = datetime.timedelta(microseconds=1)


def chat_import(*, workspace: Workspace, user, file) -> ChatImport:
    """Import ``file`` (an uploaded file) into ``workspace`` as chats created by ``user``.

    Raises ``ImportTooLarge`` past MOTHERSHIP_IMPORT_MAX_BYTES and ``ImportRejected`` for anything
    else wrong, before a row is written; a failure while writing rolls every chat back.
    """
    limit = settings.MOTHERSHIP_IMPORT_MAX_BYTES
    if file.size > limit:
        raise ImportTooLarge(f"The file is {file.size} bytes; an import takes at most {limit} bytes.")
    raw = file.read(limit + 1)
    source, drafts = _drafts(_json(raw))
    with transaction.atomic():
        written = [_conversation_write(workspace=workspace, user=user, draft=draft) for draft in drafts]
        record = ChatImport.objects.create(
            workspace=workspace,
            user=user,
            source=source,
            filename=(getattr(file, "name", "") or "")[:255],
            size=len(raw),
            chat_ids=[str(chat.pk) for chat, _ in written],
            message_count=sum(count for _, count in written),
            notes=[note for draft in drafts for note in draft.notes],
        )
        newest = sorted((chat for chat, _ in written), key=lambda chat: chat.updated_at, reverse=True)[:TILES_PUSHED]
        for chat in newest:
            transaction.on_commit(
                lambda chat=chat: send_logged(chat_created, sender=Chat, chat_id=chat.pk, workspace_id=workspace.pk)
            )
    return record


def _json(raw: bytes):
    if not raw.strip():
        raise ImportRejected(f"The file is empty; give {ACCEPTED}.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRejected(f"The file is not UTF-8 text (byte {exc.start}); give {ACCEPTED}.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportRejected(f"The file is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except RecursionError:
        raise ImportRejected("The file is not JSON this app reads: it is nested too deeply.") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise ImportRejected(f"The file is not JSON this app reads: {exc}.") from None


def _drafts(data) -> tuple[str, list[DraftChat]]:
    if mothership_json.is_mothership_export(data):
        return ChatImport.Source.MOTHERSHIP, mothership_json.read(data)
    if chatgpt.is_chatgpt_export(data):
        return ChatImport.Source.CHATGPT, chatgpt.read(data)
    raise ImportRejected(f"Not a format this app imports; give {ACCEPTED}.")


def _conversation_write(*, workspace: Workspace, user, draft: DraftChat) -> tuple[Chat, int]:
    """One chat with its messages (ids new, the tree and the times the file's); its message count."""
    now = timezone.now()
    ordered = _parents_first(draft)
    started = draft.created_at or min((m.created_at for m in ordered if m.created_at), default=now)
    ids = {m.key: uuid.uuid4() for m in ordered}
    times: dict[str, datetime.datetime] = {}
    rows = []
    for m in ordered:
        after = times[m.parent_key] if m.parent_key is not None else None
        at = m.created_at or (after + _TICK if after else started)
        if after is not None and at <= after:
            at = after + _TICK  # a reply never sorts before what it answers (pages read in time order)
        times[m.key] = at
        rows.append(
            Message(
                id=ids[m.key],
                chat_id=None,
                parent_id=ids[m.parent_key] if m.parent_key is not None else None,
                role=m.role,
                content=m.content,
                status=Message.Status.COMPLETE,
                tool_calls=m.tool_calls,
                created_at=at,
                **m.usage,
            )
        )
    newest = max(rows, key=lambda row: (row.created_at, str(row.id)), default=None)
    leaf = ids[draft.leaf_key] if draft.leaf_key is not None else (newest.id if newest else None)
    chat = Chat.objects.create(
        workspace=workspace,
        title=draft.title,
        title_set=True,
        created_by=user,
        system_prompt=draft.system_prompt,
        model_id=draft.model_id,
        leaf_id=leaf,
        updated_at=draft.updated_at or (newest.created_at if newest else started),
    )
    for row in rows:
        row.chat_id = chat.pk
    Message.objects.bulk_create(rows, batch_size=BATCH)
    # created_at is auto_now_add: the INSERT wrote "now" (into the objects too); the conversation's own times go in after.
    for m, row in zip(ordered, rows, strict=True):
        row.created_at = times[m.key]
    Message.objects.bulk_update(rows, ["created_at"], batch_size=BATCH)
    Chat.objects.filter(pk=chat.pk).update(created_at=started)
    chat.created_at = started
    return chat, len(rows)


def _parents_first(draft: DraftChat) -> list:
    """The draft's messages with every parent before its children (the drafts are acyclic)."""
    children: dict[str | None, list] = {}
    for m in draft.messages:
        children.setdefault(m.parent_key, []).append(m)
    ordered, stack = [], list(reversed(children.get(None, [])))
    while stack:
        m = stack.pop()
        ordered.append(m)
        stack.extend(reversed(children.get(m.key, [])))
    return ordered
