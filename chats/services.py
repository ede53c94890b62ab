from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Case, Q, UUIDField, Value, When
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
    return Chat.objects.create(workspace=workspace, title=title, updated_at=timezone.now())


def chat_markers_repair(*, repairs: dict) -> int:
    """Rewrite stale ``active_stream_id`` markers in one UPDATE.

    ``repairs`` maps chat id → (marker as read, marker it should be). Each row is guarded by
    the value that was read (compare-and-set), so a newer turn's marker is never overwritten,
    and ``updated_at`` is left alone: maintenance never reorders a workspace's chats.
    """
    if not repairs:
        return 0
    # Stream ids are unique, so "marker = the stale stream id" alone is an exact per-row guard.
    cleared = [stale for stale, new in repairs.values() if new is None]
    count = Chat.objects.filter(active_stream_id__in=cleared).update(active_stream_id=None) if cleared else 0
    replaced = {chat_id: pair for chat_id, pair in repairs.items() if pair[1] is not None}
    if replaced:
        guard = Q()
        for chat_id, (stale, _) in replaced.items():
            guard |= Q(pk=chat_id, active_stream_id=stale)
        new_value = Case(*[When(pk=chat_id, then=Value(new)) for chat_id, (_, new) in replaced.items()], output_field=UUIDField(null=True))
        count += Chat.objects.filter(guard).update(active_stream_id=new_value)
    return count
