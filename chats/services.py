from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
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
