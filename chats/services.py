from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from chats.models import Chat, Membership, Workspace

User = get_user_model()


@transaction.atomic
def workspace_create(*, name: str, owner) -> Workspace:
    workspace = Workspace.objects.create(name=name)
    Membership.objects.create(user=owner, workspace=workspace, role=Membership.Role.OWNER)
    return workspace


def membership_add(*, workspace: Workspace, user, role: str = Membership.Role.MEMBER) -> Membership:
    membership, _ = Membership.objects.get_or_create(workspace=workspace, user=user, defaults={"role": role})
    return membership


def chat_create(*, workspace: Workspace, title: str) -> Chat:
    from chats.tiles import tile_push

    chat = Chat.objects.create(workspace=workspace, title=title, updated_at=timezone.now())
    transaction.on_commit(lambda: tile_push(chat_id=chat.pk))  # a new tile on every open dashboard
    return chat


_REPAIR_CHUNK = 1000  # rows per statement: 3 parameters each, well inside SQLite's and PostgreSQL's limits


def chat_markers_repair(*, repairs: dict) -> int:
    """Rewrite stale ``active_stream_id`` markers, one UPDATE per 1,000 rows.

    ``repairs`` maps chat id → (marker as read, marker it should be). Each row is guarded by
    the value that was read (compare-and-set), so a newer turn's marker is never overwritten,
    and ``updated_at`` is left alone: maintenance never reorders a workspace's chats. The rows
    are joined to a VALUES list by primary key, so the cost is linear in the number of repairs
    and independent of the size of the table.
    """
    if not repairs:
        return 0
    table = connection.ops.quote_name(Chat._meta.db_table)
    pk_field, marker_field = Chat._meta.pk, Chat._meta.get_field("active_stream_id")
    placeholder = "(%s::uuid, %s::uuid, %s::uuid)" if connection.vendor == "postgresql" else "(%s, %s, %s)"
    rows = list(repairs.items())
    count = 0
    for i in range(0, len(rows), _REPAIR_CHUNK):
        chunk = rows[i : i + _REPAIR_CHUNK]
        params = []
        for chat_id, (stale, new) in chunk:
            params += [
                pk_field.get_db_prep_value(chat_id, connection),
                marker_field.get_db_prep_value(stale, connection),
                marker_field.get_db_prep_value(new, connection),
            ]
        sql = (
            f"UPDATE {table} SET active_stream_id = v.column3 FROM (VALUES {', '.join([placeholder] * len(chunk))}) AS v "
            f"WHERE {table}.id = v.column1 AND {table}.active_stream_id = v.column2"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            count += cursor.rowcount
    return count


def chat_close(*, chat: Chat) -> dict:
    """Close a conversation: warming off (stop reason ``closed``), the live turn stopped, ``closed_at`` set.

    ``updated_at`` is left alone. A new message reopens the chat (``closed_at`` cleared) but
    does not turn warming back on.
    """
    from streams.services import streams_cancel_chat
    from warming.services import warming_disable

    # The stop first: it needs Redis, and if Redis is down the close fails (503) having changed nothing.
    outcome = streams_cancel_chat(chat=chat, reason="closed")
    warming_disabled = warming_disable(chat=chat, reason="closed")
    Chat.objects.filter(pk=chat.pk).update(closed_at=timezone.now())
    cancelled = bool(outcome and outcome.cancelled)
    return {"ok": True, "warming_disabled": warming_disabled, "cancelled": cancelled, "stream_id": outcome.stream_id if cancelled else None}
