"""Every read of workspaces, chats and messages. Membership is checked here, in one place."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, QuerySet, Sum
from django.db.models.functions import Length
from django.http import Http404

from chats.models import Chat, Membership, Message, Workspace
from mothership.infra import cursors
from mothership.infra.uuids import parse_uuid

MESSAGE_ORDER = ["created_at", "id"]

__all__ = [
    "ChatTree",
    "chat_get_for_member",
    "chat_get_for_trash",
    "chat_tree",
    "conversation_prefix",
    "conversation_prefixes",
    "conversation_size",
    "member_chats",
    "parse_uuid",
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


@dataclass(frozen=True)
class ChatTree:
    """Every message of a chat (oldest first), each one's parent, and the leaf of the branch shown."""

    messages: list[Message]
    parents: dict[uuid.UUID, uuid.UUID | None]
    leaf_id: uuid.UUID | None

    def branch(self) -> list[Message]:
        """The branch shown: the path from the root to the leaf."""
        by_id = {m.pk: m for m in self.messages}
        path, seen, at = [], set(), self.leaf_id
        while at in by_id and at not in seen:  # seen: a corrupt parent loop ends the walk, never hangs it
            seen.add(at)
            path.append(by_id[at])
            at = self.parents[at]
        return path[::-1]


def chat_tree(*, chat: Chat) -> ChatTree:
    """A chat's messages as a tree (an export's whole content), in one query.

    A message saved with no parent after the chat's first one (a turn started before parents
    were kept) follows the message before it: one branch, as migration 0013 reads older chats.
    The leaf is ``leaf_id`` when it is one of the chat's messages, else the newest message.
    """
    messages = list(chat.messages.order_by(*MESSAGE_ORDER))
    parents: dict[uuid.UUID, uuid.UUID | None] = {}
    for before, message in zip([None, *messages], messages, strict=False):
        parents[message.pk] = message.parent_id or (before.pk if before is not None else None)
    leaf = chat.leaf_id if chat.leaf_id in parents else (messages[-1].pk if messages else None)
    return ChatTree(messages=messages, parents=parents, leaf_id=leaf)


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
