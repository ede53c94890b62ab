from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from chats.attachments.selectors import message_attachments
from chats.attachments.service import attachments_files_delete_on_commit
from chats.models import MAX_PINNED, UNTITLED, Attachment, Chat, ChatShare, ChatVisit, Membership, Message, Workspace
from chats.selectors import chat_branch_messages, shares_active_count
from chats.signals import chat_archived, chat_created, chat_renamed, chat_restored, chat_trashed
from mothership.infra.mcp.config import split_tool_name
from mothership.infra.signals import send_logged

User = get_user_model()


@transaction.atomic
def workspace_create(*, name: str, owner) -> Workspace:
    workspace = Workspace.objects.create(name=name)
    Membership.objects.create(user=owner, workspace=workspace, role=Membership.Role.OWNER)
    return workspace


def membership_add(*, workspace: Workspace, user, role: str = Membership.Role.MEMBER) -> Membership:
    membership, _ = Membership.objects.get_or_create(workspace=workspace, user=user, defaults={"role": role})
    return membership


class MembershipRefused(Exception):
    """A change of members that would break a rule (the message says which, in a person's words)."""


LAST_OWNER = "A workspace needs an owner: make someone else an owner first."


def member_invite(*, workspace: Workspace, user, role: str = Membership.Role.MEMBER) -> Membership:
    """Make ``user`` a member of ``workspace`` with ``role``; ``MembershipRefused`` when they already are one."""
    if Membership.objects.filter(workspace=workspace, user=user).exists():
        raise MembershipRefused(f"{user.username} is already a member of this workspace.")
    return membership_add(workspace=workspace, user=user, role=role)


def _owners_after(membership: Membership, *, role: str | None) -> int:
    """How many owners the workspace keeps once ``membership`` has ``role`` (None: removed); the
    workspace's row locked first, so two owners stepping down at once cannot leave it with none."""
    Workspace.objects.select_for_update().filter(pk=membership.workspace_id).first()
    others = Membership.objects.filter(workspace_id=membership.workspace_id, role=Membership.Role.OWNER).exclude(pk=membership.pk)
    return others.count() + (role == Membership.Role.OWNER)


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str) -> Membership:
    """Give a member another role; ``MembershipRefused`` when that would leave the workspace without an owner."""
    if role not in Membership.Role.values:
        raise ValueError(f"No role {role!r}; choose one of {', '.join(Membership.Role.values)}.")
    if _owners_after(membership, role=role) == 0:
        raise MembershipRefused(LAST_OWNER)
    Membership.objects.filter(pk=membership.pk).update(role=role)
    membership.role = role
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    """Take a member out of the workspace: their access goes at once (``post_delete`` →
    ``mothership.access`` closes what their sockets hold of it); ``MembershipRefused`` for the last owner."""
    if _owners_after(membership, role=None) == 0:
        raise MembershipRefused(LAST_OWNER)
    membership.delete()


def chat_create(*, workspace: Workspace, title: str = "", created_by=None, model_id: str = "", system_prompt: str = "") -> Chat:
    """A new chat; with no title it is called ``UNTITLED`` until its first message names it."""
    title = title.strip()
    chat = Chat.objects.create(
        workspace=workspace,
        title=title or UNTITLED,
        title_set=bool(title),
        created_by=created_by,
        model_id=model_id,
        system_prompt=system_prompt,
        updated_at=timezone.now(),
    )
    # After commit, so a receiver (a new tile on every open dashboard) reads the saved row.
    transaction.on_commit(lambda: send_logged(chat_created, sender=Chat, chat_id=chat.pk, workspace_id=workspace.pk))
    return chat


def chat_rename(*, chat: Chat, title: str) -> Chat:
    """A title given by hand (the first message no longer names the chat); every open dashboard's tile follows."""
    Chat.objects.filter(pk=chat.pk).update(title=title, title_set=True)
    chat.title, chat.title_set = title, True
    transaction.on_commit(lambda: send_logged(chat_renamed, sender=Chat, chat_id=chat.pk, workspace_id=chat.workspace_id))
    return chat


def chat_set_model(*, chat: Chat, model_id: str) -> Chat:
    """The model the chat's next turns use (a turn already running keeps its own)."""
    Chat.objects.filter(pk=chat.pk).update(model_id=model_id)
    chat.model_id = model_id
    return chat


def chat_mark_seen(*, user, chat: Chat) -> None:
    """The member has the chat in front of them now: its replies so far are no longer new to them."""
    ChatVisit.objects.update_or_create(user=user, chat=chat, defaults={"seen_at": timezone.now()})


def chat_set_system_prompt(*, chat: Chat, system_prompt: str) -> Chat:
    """The system prompt the chat's next turns and warms send (a turn already running keeps its own)."""
    Chat.objects.filter(pk=chat.pk).update(system_prompt=system_prompt)
    chat.system_prompt = system_prompt
    return chat


def chat_set_tools(*, chat: Chat, tools: list[str]) -> Chat:
    """The MCP tools the chat's next turns may call (validated by the caller: ``tools_validate``)."""
    Chat.objects.filter(pk=chat.pk).update(tools=tools)
    chat.tools = tools
    return chat


def tools_validate(tools: list[str]) -> list[str]:
    """``tools`` as a chat keeps them (each once, in order), or ``ValueError`` naming the first wrong one."""
    servers = {server.name for server in settings.MCP_SERVERS}
    kept: list[str] = []
    for name in tools:
        try:
            server, _tool = split_tool_name(name)
        except ValueError:
            raise ValueError(f"{name!r} is not a tool name: use <server>.<tool> or <server>.*") from None
        if server not in servers:
            known = ", ".join(sorted(servers)) or "none (MCP_SERVERS is empty)"
            raise ValueError(f"No tool server is named {server!r}; the servers are: {known}.")
        if name not in kept:
            kept.append(name)
    return kept


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


def chat_mark_closed(*, chat: Chat) -> None:
    """Record ``closed_at``; ``updated_at`` is left alone (closing never reorders the tiles)."""
    Chat.objects.filter(pk=chat.pk).update(closed_at=timezone.now())


def chat_set_archived(*, chat: Chat, archived: bool) -> Chat:
    """Archive the chat (out of the dashboard and the list, behind their Archived filter) or take it
    back out; every open dashboard drops or shows its tile. ``updated_at`` is left alone."""
    when = timezone.now() if archived else None
    if Chat.objects.filter(pk=chat.pk, archived_at__isnull=archived).update(archived_at=when):
        chat.archived_at = when
        transaction.on_commit(
            lambda: send_logged(chat_archived, sender=Chat, chat_id=chat.pk, workspace_id=chat.workspace_id, archived=archived)
        )
    return chat


class TooManyPinned(Exception):
    """The workspace already has ``MAX_PINNED`` pinned chats."""

    def __init__(self):
        super().__init__(f"A workspace keeps at most {MAX_PINNED} pinned conversations; unpin one first.")


def chat_set_pinned(*, chat: Chat, pinned: bool) -> Chat:
    """Pin the chat (listed first, above the rest) or unpin it; ``TooManyPinned`` past ``MAX_PINNED``."""
    if pinned and chat.pinned_at is None:
        if (
            Chat.objects.filter(workspace_id=chat.workspace_id, pinned_at__isnull=False, deleted_at__isnull=True).count()
            >= MAX_PINNED
        ):
            raise TooManyPinned()
        chat.pinned_at = timezone.now()
    elif not pinned:
        chat.pinned_at = None
    Chat.objects.filter(pk=chat.pk).update(pinned_at=chat.pinned_at)
    return chat


class BranchMoved(Exception):
    """The shown branch changed (a turn started) between reading it and switching it."""


def chat_set_leaf(*, chat: Chat, leaf_id, expected) -> None:
    """Show the branch that ends at ``leaf_id``: compare-and-set against ``expected``, the leaf as
    read, so a turn that started meanwhile (and moved the leaf to its reply) is never hidden."""
    if not Chat.objects.filter(pk=chat.pk, leaf_id=expected).update(leaf_id=leaf_id):
        raise BranchMoved("A reply started in this conversation meanwhile; look again.")
    chat.leaf_id = leaf_id


def chats_discard_empty(*, user, workspace_id, chat_id=None) -> int:
    """Delete for good the untitled chats ``user`` made in this workspace (``chat_id``: that one
    only) that are still empty: no message, no turn. A new chat is kept once it has a first message
    (a chat given a title by hand is kept as it is).
    Guarded in the statement itself: a first send commits its marker (``active_stream_id``) and its
    messages together, and a chat whose row says a turn started is never deleted."""
    empty = Chat.objects.filter(
        workspace_id=workspace_id, created_by=user, title_set=False, active_stream_id__isnull=True, deleted_at__isnull=True
    ).exclude(Exists(Message.objects.filter(chat_id=OuterRef("pk"))))
    if chat_id is not None:
        empty = empty.filter(pk=chat_id)
    ids = list(empty.values_list("pk", flat=True))
    if not ids:
        return 0
    deleted = _chats_delete(empty.filter(pk__in=ids)).get(Chat._meta.label, 0)
    for pk in ids:  # their tiles leave every open dashboard
        transaction.on_commit(lambda pk=pk: send_logged(chat_trashed, sender=Chat, chat_id=pk, workspace_id=workspace_id))
    return deleted


UNUSED_CHAT_DAYS = 1  # an untitled chat nobody sent a message to for this long is removed


def chats_discard_unused() -> int:
    """Delete for good the untitled chats made more than ``UNUSED_CHAT_DAYS`` ago that nobody ever
    sent a message to (never listed: a chat is kept once it has a first message)."""
    before = timezone.now() - datetime.timedelta(days=UNUSED_CHAT_DAYS)
    unused = Chat.objects.filter(title_set=False, created_at__lt=before, active_stream_id__isnull=True).exclude(
        Exists(Message.objects.filter(chat_id=OuterRef("pk")))
    )
    return _chats_delete(unused).get(Chat._meta.label, 0)


def chat_mark_trashed(*, chat: Chat) -> bool:
    """Record ``deleted_at`` (once: a second delete keeps the first time); every open dashboard
    drops the tile. ``updated_at`` is left alone. False when it was already in the trash."""
    now = timezone.now()
    moved = bool(Chat.objects.filter(pk=chat.pk, deleted_at__isnull=True).update(deleted_at=now))
    if moved:
        chat.deleted_at = now
        transaction.on_commit(lambda: send_logged(chat_trashed, sender=Chat, chat_id=chat.pk, workspace_id=chat.workspace_id))
    return moved


def chat_mark_restored(*, chat: Chat) -> bool:
    """Clear ``deleted_at``; the tile comes back on every open dashboard. False when it was not in the trash."""
    restored = bool(Chat.objects.filter(pk=chat.pk, deleted_at__isnull=False).update(deleted_at=None))
    if restored:
        chat.deleted_at = None
        transaction.on_commit(lambda: send_logged(chat_restored, sender=Chat, chat_id=chat.pk, workspace_id=chat.workspace_id))
    return restored


def chats_purge(*, chat_ids) -> dict[str, int]:
    """Delete these chats for good, with their messages (and, through their foreign keys, their
    streams, visits and warming schedules). The spend ledger keeps its rows (``Charge.chat`` is
    SET_NULL). Their attachments' files leave the storage once this commits. Counts per kind of row deleted."""
    per_model = _chats_delete(Chat.objects.filter(pk__in=list(chat_ids)))
    return {
        "chats": per_model.get(Chat._meta.label, 0),
        "messages": per_model.get(Message._meta.label, 0),
        "streams": per_model.get("streams.Stream", 0),
        "attachments": per_model.get(Attachment._meta.label, 0),
    }


@transaction.atomic
def _chats_delete(chats) -> dict[str, int]:
    """Delete these chats (a queryset) with everything they own, their files too (after commit); rows deleted per model."""
    attachments_files_delete_on_commit(attachments=Attachment.objects.filter(chat__in=chats))
    return chats.delete()[1]


class ShareLimitReached(Exception):
    """The user already has MOTHERSHIP_SHARES_PER_USER active share links."""


def share_snapshot(*, chat: Chat) -> list[dict]:
    """The shown branch as a share keeps it: role, text, status, time and each tool call's name and
    outcome, each attached file's name, type and size (never its bytes: a share is public, the
    files are the members'); no ids, no usage, no tool arguments or results. Messages with nothing
    to show (a reply not yet written, one still streaming) are left out."""
    shown = []
    branch = chat_branch_messages(chat=chat)
    attached = message_attachments(message_ids=[m.pk for m in branch if m.role == Message.Role.USER])
    for message in branch:
        calls = [
            {"tool": str(call.get("tool", "")), "status": str(call.get("status", ""))}
            for call in message.tool_calls or []
            if isinstance(call, dict)
        ]
        files = [{"name": a.name, "content_type": a.content_type, "size": a.size} for a in attached.get(message.pk, [])]
        if not message.content and not calls and not files:
            continue
        shown.append(
            {
                "role": message.role,
                "content": message.content,
                "status": message.status,
                "created_at": message.created_at.isoformat(),
                "tool_calls": calls,
                **({"attachments": files} if files else {}),
            }
        )
    return shown


def share_create(*, chat: Chat, created_by) -> ChatShare:
    """A new public link to a snapshot of the chat as it is shown now (each call a new link; the
    older ones stay until revoked). ``ShareLimitReached`` past MOTHERSHIP_SHARES_PER_USER."""
    with transaction.atomic():
        # The maker's row locked: two racing shares of one user count one after the other.
        User.objects.select_for_update().filter(pk=created_by.pk).first()
        limit = settings.MOTHERSHIP_SHARES_PER_USER
        if shares_active_count(user=created_by) >= limit:
            raise ShareLimitReached(
                f"You have {limit} active share links, the most allowed (MOTHERSHIP_SHARES_PER_USER); revoke one to share again."
            )
        return ChatShare.objects.create(chat=chat, created_by=created_by, title=chat.title, messages=share_snapshot(chat=chat))


def shares_revoke(*, shares) -> int:
    """Revoke these links (a queryset of ``ChatShare``): they answer 404 from now on, for good.
    The ones already revoked keep their time. How many were revoked now."""
    return shares.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
