"""Reads of attachments: one a member may open, those a send names, those of messages (for a
prompt and for the messages' JSON)."""

from __future__ import annotations

import uuid
from collections import defaultdict

from django.conf import settings
from django.db.models import Q

from chats.attachments.service import AttachmentRefused
from chats.models import Attachment, Chat, Message
from mothership.infra.uuids import parse_uuid

# An attachment as a prompt carries it (``streams.providers`` turn it into each API's parts):
# what every model reads is here, so a turn and a warm send the same bytes.
PROMPT_FIELDS = (
    "id",
    "name",
    "kind",
    "content_type",
    "size",
    "sha256",
    "model_key",
    "model_content_type",
    "key",
    "text",
    "text_truncated",
    "pages",
    "tokens",
)


def attachment_get(*, chat: Chat, attachment_id, user) -> Attachment | None:
    """The chat's attachment ``user`` (a member) may open: any one sent, or one they uploaded; else None."""
    pk = parse_uuid(attachment_id)
    if pk is None:
        return None
    return chat.attachments.filter(Q(sent_at__isnull=False) | Q(uploaded_by=user), pk=pk).first()


def attachments_for_send(*, chat: Chat, user, ids) -> list[Attachment]:
    """The attachments a send names, in its order: the chat's, sent before or uploaded by ``user``.

    ``AttachmentRefused`` (400) for an id that is none of those, a repeat, or past the number per message.
    """
    if len(ids) > settings.MOTHERSHIP_ATTACHMENTS_PER_MESSAGE:
        raise AttachmentRefused(f"A message may carry {settings.MOTHERSHIP_ATTACHMENTS_PER_MESSAGE} files at most.")
    pks = [parse_uuid(i) for i in ids]
    if len(set(pks)) != len(pks):
        raise AttachmentRefused("The same file is named twice.")
    found = {
        a.pk: a for a in chat.attachments.filter(Q(sent_at__isnull=False) | Q(uploaded_by=user), pk__in=[p for p in pks if p])
    }
    missing = [str(i) for i, pk in zip(ids, pks, strict=True) if pk not in found]
    if missing:
        raise AttachmentRefused(f"No such file in this conversation: {', '.join(missing)} (upload it to this chat first).")
    return [found[pk] for pk in pks]


def prompt_attachments(*, message_ids) -> dict[uuid.UUID, list[dict]]:
    """Message id → its attachments as a prompt carries them (``PROMPT_FIELDS``), in the order the send named them."""
    through = Message.attachments.through
    rows = (
        through.objects.filter(message_id__in=message_ids)
        .order_by("id")  # the order the send named them
        .values_list("message_id", *(f"attachment__{field}" for field in PROMPT_FIELDS))
    )
    found: dict[uuid.UUID, list[dict]] = defaultdict(list)
    for message_id, *values in rows:
        described = dict(zip(PROMPT_FIELDS, values, strict=True))
        described["id"] = str(described["id"])
        found[message_id].append(described)
    return found


def message_attachments(*, message_ids) -> dict[uuid.UUID, list[Attachment]]:
    """Message id → its attachments (the rows, for JSON and pages), in the order the send named them."""
    return _by_message(Message.attachments.through.objects.filter(message_id__in=list(message_ids)))


def chat_message_attachments(*, chat: Chat) -> dict[uuid.UUID, list[Attachment]]:
    """Message id → its attachments, for every message of ``chat`` (every branch: an export), in upload order."""
    return _by_message(Message.attachments.through.objects.filter(message__chat=chat))


def _by_message(through_rows) -> dict[uuid.UUID, list[Attachment]]:
    rows = through_rows.select_related("attachment")
    found: dict[uuid.UUID, list[Attachment]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.pk):  # the order the send named them
        found[row.message_id].append(row.attachment)
    return found
