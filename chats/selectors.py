"""Every read of workspaces, chats and messages. Membership is checked here, in one place."""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, QuerySet, Sum
from django.db.models.functions import Length
from django.http import Http404

from chats.models import Chat, ChatShare, Membership, Message, Workspace
from mothership.infra import cursors
from mothership.infra.uuids import parse_uuid

MESSAGE_ORDER = ["created_at", "id"]

__all__ = [
    "chat_branch",
    "chat_get_for_member",
    "chat_shares_active",
    "chat_get_for_trash",
    "conversation_prefix",
    "conversation_prefixes",
    "conversation_size",
    "member_chats",
    "parse_uuid",
    "share_get_public",
    "shares_for_revoke",
    "shares_active_count",
    "shares_revocable",
    "trash_due",
    "user_is_member",
    "workspace_get",
    "workspace_is_member",
    "workspace_is_owner",
    "workspace_list",
]


def workspace_list(*, user) -> QuerySet[Workspace]:
    return Workspace.objects.filter(memberships__user=user).order_by("name")


def workspace_get(*, user, workspace_id) -> Workspace:
    """The workspace if ``user`` is a member; 404 otherwise (never a 403 that leaks existence)."""
    pk = parse_uuid(workspace_id)
    workspace = Workspace.objects.filter(pk=pk, memberships__user=user).first() if pk else None
    if workspace is None:
        raise Http404("No such workspace.")
    return workspace


def workspace_is_member(*, user, workspace_id) -> bool:
    pk = parse_uuid(workspace_id)
    return bool(pk) and getattr(user, "is_authenticated", False) and workspace_list(user=user).filter(pk=pk).exists()


def workspace_is_owner(*, user, workspace_id) -> bool:
    return Membership.objects.filter(user=user, workspace_id=workspace_id, role=Membership.Role.OWNER).exists()


def member_chats(*, user, trashed: bool = False) -> QuerySet[Chat]:
    """Every chat of every workspace ``user`` belongs to, the trash left out (``trashed``: only it)."""
    return Chat.objects.filter(workspace__memberships__user=user, deleted_at__isnull=not trashed)


def still_visible(*, user_ref, chat_ids, workspace_ids) -> tuple[dict[str, Exists], dict[str, Exists]]:
    """Per chat id and per workspace id, whether the user ``user_ref`` (an ``OuterRef`` to a user's
    pk) is still a member of it: expressions, so that a socket's check is one query in all."""
    chats = {
        str(pk): Exists(Chat.objects.filter(pk=pk, deleted_at__isnull=True, workspace__memberships__user_id=user_ref))
        for pk in chat_ids
    }
    workspaces = {str(pk): Exists(Membership.objects.filter(workspace_id=pk, user_id=user_ref)) for pk in workspace_ids}
    return chats, workspaces


def chat_get_for_member(*, user, chat_id) -> Chat:
    pk = parse_uuid(chat_id)
    chat = member_chats(user=user).select_related("workspace").filter(pk=pk).first() if pk else None
    if chat is None:
        raise Http404("No such chat.")
    return chat


MANAGE_REFUSED = "Only the member who created this chat, or an owner of its workspace, may close it or change its warming."


def chat_get_for_manager(*, user, chat_id) -> Chat:
    """A chat ``user`` may close and whose warming they may change: one they created, or any chat of
    a workspace they own. ``Http404`` to non-members (as every read), ``PermissionDenied`` to other members."""
    chat = chat_get_for_member(user=user, chat_id=chat_id)
    if not user_may_manage(user=user, chat=chat):
        raise PermissionDenied(MANAGE_REFUSED)
    return chat


TRASH_REFUSED = "Only the member who created this chat, or an owner of its workspace, may delete or restore it."


def chat_get_for_trash(*, user, chat_id, trashed: bool) -> Chat:
    """A chat ``user`` may move to the trash (``trashed`` False) or take back from it (True): one
    they created, or any of a workspace they own. ``Http404`` to non-members and for a chat not
    where it is looked for; ``PermissionDenied`` to other members."""
    pk = parse_uuid(chat_id)
    chat = member_chats(user=user, trashed=trashed).select_related("workspace").filter(pk=pk).first() if pk else None
    if chat is None:
        raise Http404("No such chat.")
    if not user_may_manage(user=user, chat=chat):
        raise PermissionDenied(TRASH_REFUSED)
    return chat


def trash_due(*, before) -> QuerySet[Chat]:
    """Chats in the trash since before ``before``: due for the purge."""
    return Chat.objects.filter(deleted_at__lt=before)


def user_may_manage(*, user, chat: Chat) -> bool:
    """Whether ``user`` (a member) may close ``chat`` and change its warming: its creator, or an owner."""
    return (
        chat.created_by_id == user.pk
        or Membership.objects.filter(user=user, workspace_id=chat.workspace_id, role=Membership.Role.OWNER).exists()
    )


def chat_messages_page(*, chat: Chat, cursor: str | None = None, limit: int) -> tuple[list[Message], str | None]:
    """The ``limit`` latest messages (before ``cursor``), oldest first, and the cursor of the
    messages before them (None when these are the first). Raises ``cursors.BadCursor``."""
    qs = chat.messages.select_related("stream")  # its model prices it (the message's cost)
    if cursor:
        qs = qs.filter(cursors.after(MESSAGE_ORDER, cursors.decode(cursor, 2), descending=True))
    newest_first = list(qs.order_by("-created_at", "-id")[: limit + 1])
    page = newest_first[:limit]
    earlier = cursors.encode([page[-1].created_at, page[-1].id]) if len(newest_first) > limit else None
    return page[::-1], earlier


def chat_message_get(*, chat: Chat, message_id) -> Message | None:
    """The chat's message with this id (with its stream, which prices it); None for any other id."""
    pk = parse_uuid(message_id)
    return chat.messages.select_related("stream").filter(pk=pk).first() if pk else None


def user_is_member(*, user, chat_id) -> bool:
    pk = parse_uuid(chat_id)
    return bool(pk) and getattr(user, "is_authenticated", False) and member_chats(user=user).filter(pk=pk).exists()


def _with_system(system: str, messages: list[dict]) -> list[dict]:
    """The system prompt first, as a ``system`` message, when there is one and a conversation to
    put it before (a chat with no text yet has nothing to send or warm)."""
    return [{"role": "system", "content": system}, *messages] if system and messages else messages


def conversation_prefix(*, chat_id, until: Message | None = None, exclude_ids=(), system: str | None = None) -> list[dict]:
    """What the model sees: the system prompt, then every message with text, in order (up to
    ``until`` when given). ``system``: the turn's own system prompt; None, the chat's (a warm
    warms what the next turn sends).

    The one definition for a turn and for a warm: a warm hits the cache only while both send
    exactly the same prefix.
    """
    rows = Message.objects.filter(chat_id=chat_id).exclude(content="")
    if until is not None:
        rows = rows.filter(created_at__lte=until.created_at)
    if exclude_ids:
        rows = rows.exclude(pk__in=list(exclude_ids))
    messages = [{"role": r["role"], "content": r["content"]} for r in rows.order_by("created_at", "id").values("role", "content")]
    if system is None:
        system = Chat.objects.filter(pk=chat_id).values_list("system_prompt", flat=True).first() or ""
    return _with_system(system, messages)


def conversation_size(*, chat_id) -> tuple[int, int]:
    """The characters and the messages of a conversation's text (what a prompt's cost is estimated
    from before it is built), in one aggregate query."""
    row = Message.objects.filter(chat_id=chat_id).exclude(content="").aggregate(chars=Sum(Length("content")), count=Count("id"))
    return row["chars"] or 0, row["count"]


def conversation_prefixes(*, chat_ids, systems: dict | None = None) -> dict[uuid.UUID, list[dict]]:
    """``conversation_prefix`` of many chats (a warm batch): chat id → its prefix, in one query
    when ``systems`` (chat id → its system prompt, read with the batch's claims) is given.

    The same system prompt, rows and order as ``conversation_prefix``, or a warm would miss the
    cache its turn wrote; a chat with no text yet maps to an empty list.
    """
    prefixes: dict[uuid.UUID, list[dict]] = {uuid.UUID(str(chat_id)): [] for chat_id in chat_ids}
    rows = Message.objects.filter(chat_id__in=list(prefixes)).exclude(content="").order_by("chat_id", "created_at", "id")
    for chat_id, role, content in rows.values_list("chat_id", "role", "content"):
        prefixes[chat_id].append({"role": role, "content": content})
    if systems is None:
        systems = dict(Chat.objects.filter(pk__in=list(prefixes)).exclude(system_prompt="").values_list("id", "system_prompt"))
    for chat_id, system in systems.items():
        if chat_id in prefixes:
            prefixes[chat_id] = _with_system(system, prefixes[chat_id])
    return prefixes


def chat_branch(*, chat: Chat) -> list[Message]:
    """The conversation as it is shown now: the path from the chat's leaf (``leaf_id``; None, or
    one no longer in the chat: the newest message) up to its root, oldest first. A chat whose
    messages carry no parent links at all (made before messages formed a tree) is one branch in
    the order they were written. One query."""
    rows = list(chat.messages.order_by(*MESSAGE_ORDER))
    if not rows:
        return []
    if not any(row.parent_id for row in rows):
        return rows
    by_id = {row.pk: row for row in rows}
    leaf = by_id.get(chat.leaf_id) or rows[-1]
    path, seen = [], set()
    while leaf is not None and leaf.pk not in seen:  # seen: a cycle written by hand ends the walk
        seen.add(leaf.pk)
        path.append(leaf)
        leaf = by_id.get(leaf.parent_id)
    return path[::-1]


# What this app's tokens look like (``secrets.token_urlsafe``): anything else is 404 without a
# query (PostgreSQL refuses a NUL byte in a text parameter: that would be a 500).
SHARE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_share_token(token) -> bool:
    return isinstance(token, str) and SHARE_TOKEN.fullmatch(token) is not None


def share_get_public(*, token: str) -> ChatShare:
    """The share behind a public link: ``Http404`` when unknown, revoked, or its chat is in the trash
    (a restored chat's links work again)."""
    share = (
        ChatShare.objects.filter(token=token, revoked_at__isnull=True, chat__deleted_at__isnull=True).first()
        if is_share_token(token)
        else None
    )
    if share is None:
        raise Http404("No such share link.")
    return share


def chat_shares_active(*, chat: Chat) -> QuerySet[ChatShare]:
    """The chat's links that still answer, newest first (with who made each)."""
    return chat.shares.filter(revoked_at__isnull=True).select_related("created_by").order_by("-created_at", "-id")


def shares_active_count(*, user) -> int:
    """The links ``user`` made that are not revoked (those of chats in the trash included: they come back on restore)."""
    return ChatShare.objects.filter(created_by=user, revoked_at__isnull=True).count()


def user_may_revoke_share(*, user, share: ChatShare, chat: Chat, manages: bool | None = None) -> bool:
    """Its maker, the chat's creator or an owner of its workspace (``manages``: the last two, if known)."""
    if share.created_by_id == user.pk:
        return True
    return user_may_manage(user=user, chat=chat) if manages is None else manages


def shares_revocable(*, user, chat: Chat) -> QuerySet[ChatShare]:
    """The chat's active links ``user`` (a member) may revoke: every one for its creator and the
    workspace's owners, the ones they made for anyone else."""
    active = chat.shares.filter(revoked_at__isnull=True)
    return active if user_may_manage(user=user, chat=chat) else active.filter(created_by=user)


SHARE_REVOKE_REFUSED = "Only the member who made a share link, the chat's creator or an owner of its workspace may revoke it."


def shares_for_revoke(*, user, chat: Chat, token: str | None = None) -> QuerySet[ChatShare]:
    """The active links ``user`` asks to revoke: the one with ``token``, or every one of the chat
    (all or none). ``Http404`` for a token that is no active link of the chat; ``PermissionDenied``
    when any of them is not theirs to revoke (``shares_revocable``)."""
    active = chat_shares_active(chat=chat)
    revocable = shares_revocable(user=user, chat=chat)
    if token is not None:
        share = active.filter(token=token).first() if is_share_token(token) else None
        if share is None:
            raise Http404("No such active share link of this chat.")
        if not revocable.filter(pk=share.pk).exists():
            raise PermissionDenied(SHARE_REVOKE_REFUSED)
        return revocable.filter(pk=share.pk)
    others = active.exclude(pk__in=revocable.values("pk")).count()
    if others:
        raise PermissionDenied(
            f"{SHARE_REVOKE_REFUSED} {others} of this chat's links were made by other members; "
            "revoke yours one at a time with ?token=<token>."
        )
    return revocable
