"""Every read of workspaces, chats and messages. Membership is checked here, in one place."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.functions import Length
from django.http import Http404
from django.utils.dateparse import parse_datetime

from chats import search
from chats.attachments.selectors import chat_message_attachments, prompt_attachments
from chats.models import Chat, ChatShare, Membership, Message, Workspace
from mothership.infra import cursors
from mothership.infra.prepared import PreparedRead
from mothership.infra.uuids import parse_uuid

__all__ = [
    "ChatTree",
    "branch_leaf",
    "chat_branch_messages",
    "chat_branch",
    "chat_get_for_member",
    "chat_shares_active",
    "chat_get_for_trash",
    "chat_search",
    "chat_tree",
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
    "workspace_get_for_owner",
    "workspace_members",
    "member_get",
    "user_find",
    "user_memberships",
    "UserNotFound",
]


def workspace_list(*, user) -> QuerySet[Workspace]:
    return Workspace.objects.filter(memberships__user=user).order_by("name")


def user_memberships(*, user) -> QuerySet[Membership]:
    """``user``'s memberships with their workspaces, by the workspaces' names."""
    return Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name", "workspace_id")


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


MEMBERS_REFUSED = "Only an owner of this workspace may change its members."


def workspace_get_for_owner(*, user, workspace_id) -> Workspace:
    """The workspace if ``user`` owns it; ``Http404`` to non-members, ``PermissionDenied`` to other members."""
    workspace = workspace_get(user=user, workspace_id=workspace_id)
    if not workspace_is_owner(user=user, workspace_id=workspace.pk):
        raise PermissionDenied(MEMBERS_REFUSED)
    return workspace


def workspace_members(*, workspace: Workspace) -> QuerySet[Membership]:
    """Its memberships with their users: owners first, then by username."""
    return (
        Membership.objects.filter(workspace=workspace)
        .select_related("user")
        .order_by("-role", "user__username")  # "owner" sorts after "member": descending puts owners first
    )


def member_get(*, workspace: Workspace, user_id) -> Membership:
    """The membership of the user ``user_id`` in ``workspace``; ``Http404`` when they are no member."""
    pk = str(user_id)
    membership = (
        Membership.objects.select_related("user").filter(workspace=workspace, user_id=int(pk)).first() if pk.isdigit() else None
    )
    if membership is None:
        raise Http404("No such member of this workspace.")
    return membership


class UserNotFound(Exception):
    pass


def user_find(*, identifier: str):
    """The active user whose username is ``identifier``, or whose e-mail it is (any case);
    ``UserNotFound`` (saying why) when none is, or when several share that e-mail."""
    identifier = identifier.strip()
    users = get_user_model().objects.filter(is_active=True)
    found = users.filter(username=identifier).first()
    if found is not None:
        return found
    if "@" in identifier:
        by_email = list(users.filter(email__iexact=identifier)[:2])
        if len(by_email) == 1:
            return by_email[0]
        if by_email:
            raise UserNotFound("More than one person has that e-mail; give their username instead.")
    raise UserNotFound("No one here has that username or e-mail.")


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


# Every send's first read, compiled once (``mothership.infra.prepared``).
_CHAT_FOR_MEMBER = PreparedRead(
    lambda user_id, chat_id: member_chats(user=user_id).select_related("workspace").filter(pk=chat_id), kinds=(int, uuid.UUID)
)


def chat_get_for_member(*, user, chat_id) -> Chat:
    pk = parse_uuid(chat_id)
    chat = next(iter(_CHAT_FOR_MEMBER.run(user.pk, pk)), None) if pk and user.pk is not None else None
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


def chat_search(
    *, workspace: Workspace, query: search.SearchQuery, cursor: str | None = None, limit: int = search.PAGE
) -> tuple[list[search.SearchHit], str | None]:
    """One page of the workspace's titles and messages that match ``query``, best first (chats in
    the trash left out; archived ones kept), and the cursor of the next page (None on the last).
    The caller has checked membership (``workspace_get``). Raises ``cursors.BadCursor``."""
    offset = 0
    if cursor:
        (value,) = cursors.decode(cursor, 1)
        if not value.isdigit() or int(value) >= search.RESULTS_MAX:
            raise cursors.BadCursor(cursor)
        offset = int(value)
    limit = min(limit, search.RESULTS_MAX - offset)
    # One more than the page: whether a next one exists, without counting every match.
    found = search.hits(workspace_id=workspace.pk, query=query, offset=offset, limit=limit + 1)
    following = offset + limit
    more = len(found) > limit and following < search.RESULTS_MAX
    return found[:limit], cursors.encode([following]) if more else None


def trash_due(*, before) -> QuerySet[Chat]:
    """Chats in the trash since before ``before``: due for the purge."""
    return Chat.objects.filter(deleted_at__lt=before)


def user_may_manage(*, user, chat: Chat) -> bool:
    """Whether ``user`` (a member) may close ``chat`` and change its warming: its creator, or an owner."""
    return (
        chat.created_by_id == user.pk
        or Membership.objects.filter(user=user, workspace_id=chat.workspace_id, role=Membership.Role.OWNER).exists()
    )


def _branch(nodes: dict, leaf_id) -> list:
    """The ids from the root to ``leaf_id`` (the newest node when it is not one of ``nodes``), through
    their parents (every one of them when none has a parent). ``nodes``: id → row whose first item is the parent id, in the order they were
    written (the newest last)."""
    if not nodes:
        return []
    node = leaf_id if leaf_id in nodes else next(reversed(nodes))
    if all(row[0] is None for row in nodes.values()):
        # No message names a parent (rows written in bulk by a script, not by the app): one branch,
        # in the order they were written, as migration 0013 links older chats.
        ids = list(nodes)
        return ids[: ids.index(node) + 1]
    path, seen = [], set()
    while node is not None and node in nodes and node not in seen:  # a cycle can only come from bad data
        seen.add(node)
        path.append(node)
        node = nodes[node][0]
    return path[::-1]


def _ordered(qs) -> QuerySet:
    return qs.order_by("created_at", "id")


def chat_branch(*, chat: Chat) -> tuple[list, dict]:
    """The shown branch of ``chat`` (ids from its first message to its leaf) and, per message id
    of the chat, the ids of its siblings (the same parent, the oldest first; itself among them)."""
    nodes = {pk: (parent,) for pk, parent in _ordered(chat.messages.all()).values_list("id", "parent_id")}
    children: dict = {}
    for pk, (parent,) in nodes.items():
        children.setdefault(parent, []).append(pk)
    siblings = {pk: children[parent] for pk, (parent,) in nodes.items()}
    return _branch(nodes, chat.leaf_id), siblings


def branch_leaf(*, chat: Chat, message_id) -> uuid.UUID | None:
    """The leaf of the branch through ``message_id``: it, then at each step its newest child. None
    when it is not one of the chat's messages."""
    nodes = list(_ordered(chat.messages.all()).values_list("id", "parent_id"))
    newest_child = {parent: pk for pk, parent in nodes}  # the newest last: each parent keeps its newest child
    pk = parse_uuid(message_id)
    if pk is None or pk not in {node for node, _ in nodes}:
        return None
    seen = set()
    while pk in newest_child and pk not in seen:
        seen.add(pk)
        pk = newest_child[pk]
    return pk


def _with_siblings(messages: list[Message], siblings: dict) -> list[Message]:
    for message in messages:
        message.sibling_ids = siblings.get(message.pk, [message.pk])
    return messages


def chat_messages_page(*, chat: Chat, cursor: str | None = None, limit: int) -> tuple[list[Message], str | None]:
    """The ``limit`` latest messages of the shown branch (before ``cursor``), oldest first, each with
    its ``sibling_ids``, and the cursor of the messages before them (None when these are the first).
    Raises ``cursors.BadCursor``."""
    path, siblings = chat_branch(chat=chat)
    end = len(path)
    if cursor:
        when, first = cursors.decode(cursor, 2)  # the first message of the page before
        first, when = parse_uuid(first), parse_datetime(when)
        if first is None or when is None:
            raise cursors.BadCursor(cursor)
        if first in path:
            end = path.index(first)
        else:  # another branch is shown since: the messages of this one written before it
            times = dict(chat.messages.filter(pk__in=path).values_list("id", "created_at"))
            end = sum(1 for pk in path if (times[pk], str(pk)) < (when, str(first)))
    ids = path[max(0, end - limit) : end]
    rows = {m.pk: m for m in chat.messages.select_related("stream").filter(pk__in=ids)}  # its model prices it
    page = [rows[pk] for pk in ids if pk in rows]
    earlier = cursors.encode([page[0].created_at, page[0].id]) if page and end - limit > 0 else None
    return _with_siblings(page, siblings), earlier


def chat_message_get(*, chat: Chat, message_id) -> Message | None:
    """The chat's message with this id (with its stream, which prices it, and its siblings); None for any other id."""
    pk = parse_uuid(message_id)
    message = chat.messages.select_related("stream").filter(pk=pk).first() if pk else None
    if message is None:
        return None
    siblings = list(_ordered(chat.messages.filter(parent_id=message.parent_id)).values_list("id", flat=True))
    return _with_siblings([message], {message.pk: siblings})[0]


@dataclass(frozen=True)
class ChatTree:
    """Every message of a chat (oldest first), each one's parent, and the leaf of the branch shown."""

    messages: list[Message]
    parents: dict[uuid.UUID, uuid.UUID | None]
    leaf_id: uuid.UUID | None
    # Message id → its attached files (the rows; an export lists them, their bytes stay out).
    attachments: dict = field(default_factory=dict)

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
    """A chat's messages as a tree (an export's whole content), in one query (and one for their files).

    The same branch as every other read (``_branch``): when no message names a parent (rows
    written in bulk by a script), they are one branch in the order they were written.
    The leaf is ``leaf_id`` when it is one of the chat's messages, else the newest message.
    """
    messages = list(_ordered(chat.messages.all()))
    parents: dict[uuid.UUID, uuid.UUID | None] = {m.pk: m.parent_id for m in messages}
    if all(parent is None for parent in parents.values()):
        parents = {
            m.pk: (before.pk if before is not None else None) for before, m in zip([None, *messages], messages, strict=False)
        }
    leaf = chat.leaf_id if chat.leaf_id in parents else (messages[-1].pk if messages else None)
    return ChatTree(messages=messages, parents=parents, leaf_id=leaf, attachments=chat_message_attachments(chat=chat))


def user_is_member(*, user, chat_id) -> bool:
    pk = parse_uuid(chat_id)
    return bool(pk) and getattr(user, "is_authenticated", False) and member_chats(user=user).filter(pk=pk).exists()


def _with_system(system: str, messages: list[dict]) -> list[dict]:
    """The system prompt first, as a ``system`` message, when there is one and a conversation to
    put it before (a chat with no text yet has nothing to send or warm)."""
    return [{"role": "system", "content": system}, *messages] if system and messages else messages


def _attached(*, chat_ids) -> dict:
    """Message id → its attachments as a prompt carries them, for the messages of these chats that have any."""
    sent = Message.attachments.through.objects.filter(message__chat_id__in=chat_ids).values_list("message_id", flat=True)
    return prompt_attachments(message_ids=sent) if chat_ids else {}


def _prefix(nodes: dict, leaf_id, attached: dict) -> list[dict]:
    """The branch's messages with text or files; a message's files ride with it (``"attachments"``)."""
    messages = []
    for pk in _branch(nodes, leaf_id):
        files = attached.get(pk)
        if nodes[pk][2] or files:
            messages.append({"role": nodes[pk][1], "content": nodes[pk][2], **({"attachments": files} if files else {})})
    return messages


def _conversation_rows(chat_id):
    # Whether each message has files, in the same query: their read is skipped when none has any.
    has_files = Exists(Message.attachments.through.objects.filter(message_id=OuterRef("pk")))
    return _ordered(Message.objects.filter(chat_id=chat_id)).values_list("id", "parent_id", "role", "content", has_files)


# Every turn's conversation, compiled once (``mothership.infra.prepared``).
_CONVERSATION = PreparedRead(_conversation_rows, kinds=(uuid.UUID,))


def conversation_prefix(*, chat_id, until: Message | None = None, system: str | None = None) -> list[dict]:
    """What the model sees: the system prompt, then every message with text of the branch that ends
    at ``until`` (the chat's shown branch when None), in order. ``system``: the turn's own system
    prompt; None, the chat's (a warm warms what the next turn sends).

    The one definition for a turn and for a warm: a warm hits the cache only while both send
    exactly the same prefix.
    """
    # A turn names its own end and system prompt: then the chat's row is not read at all.
    chat = (
        {}
        if until is not None and system is not None
        else Chat.objects.filter(pk=chat_id).values("leaf_id", "system_prompt").first() or {}
    )
    nodes, with_files = {}, []
    for pk, parent_id, role, content, files in _CONVERSATION.run(chat_id):
        nodes[pk] = (parent_id, role, content)
        if files:
            with_files.append(pk)
    attached = prompt_attachments(message_ids=with_files) if with_files else {}
    messages = _prefix(nodes, until.pk if until is not None else chat.get("leaf_id"), attached)
    return _with_system(chat.get("system_prompt", "") if system is None else system, messages)


_READ = object()


def conversation_size(*, chat_id, leaf_id=_READ) -> tuple[int, int]:
    """The characters and the messages of the shown branch's text (what a prompt's cost is estimated
    from before it is built). ``leaf_id``: the chat's, as the caller read it (else it is read)."""
    if leaf_id is _READ:
        leaf_id = Chat.objects.filter(pk=chat_id).values_list("leaf_id", flat=True).first()
    rows = _ordered(Message.objects.filter(chat_id=chat_id)).values_list("id", "parent_id", Length("content"))
    nodes = {pk: (parent, chars) for pk, parent, chars in rows}
    sizes = [nodes[pk][1] for pk in _branch(nodes, leaf_id) if nodes[pk][1]]
    return sum(sizes), len(sizes)


def conversation_prefixes(*, chat_ids, systems: dict | None = None, leaves: dict | None = None) -> dict[uuid.UUID, list[dict]]:
    """``conversation_prefix`` of many chats (a warm batch): chat id → its prefix, in two queries
    (one when ``systems`` and ``leaves``, chat id → its system prompt and its ``leaf_id``, read
    with the batch's claims, are given).

    The same system prompt, branch and order as ``conversation_prefix``, or a warm would miss the
    cache its turn wrote; a chat with no text yet maps to an empty list.
    """
    ids = [uuid.UUID(str(chat_id)) for chat_id in chat_ids]
    if systems is None or leaves is None:
        read = Chat.objects.filter(pk__in=ids).values_list("id", "system_prompt", "leaf_id")
        systems, leaves = {pk: system for pk, system, _ in read}, {pk: leaf for pk, _, leaf in read}
    trees: dict[uuid.UUID, dict] = {chat_id: {} for chat_id in ids}
    rows = Message.objects.filter(chat_id__in=ids).order_by("chat_id", "created_at", "id")
    for chat_id, pk, *rest in rows.values_list("chat_id", "id", "parent_id", "role", "content"):
        trees[chat_id][pk] = rest
    attached = _attached(chat_ids=ids)
    return {
        chat_id: _with_system(systems.get(chat_id, ""), _prefix(nodes, leaves.get(chat_id), attached))
        for chat_id, nodes in trees.items()
    }


def chat_branch_messages(*, chat: Chat) -> list[Message]:
    """The conversation as it is shown now: the messages from its first to its leaf (``chat_tree``)."""
    return chat_tree(chat=chat).branch()


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
