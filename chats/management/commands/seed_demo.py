"""Ensure the demo user, its workspace and a few chats exist (idempotent). Debug only.

The demo user is an ordinary member (owner of its demo workspace), never staff: its password
is public. An administrator is created with ``manage.py createsuperuser``.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from chats import services
from chats.models import Chat, Message, Workspace

DEMO_TITLES = ["Welcome to Mothership", "Release notes draft", "Incident review: stuck tiles"]
# Each demo chat opens on a first exchange, so a new user sees what a conversation looks like.
DEMO_EXCHANGES = [
    (
        "What can I do here?",
        "Send a message and the reply streams in; **Stop** ends exactly that reply. Edit a question or "
        "**Regenerate** a reply and the old version stays (‹ 1 / 2 ›). Pin, archive or delete a "
        "conversation from its page, and turn on *cache warming* to keep its prompt cache warm while you are away.",
    ),
    (
        "Draft three bullet points for the release notes.",
        "- Conversations keep every version of an edited question or a regenerated reply.\n"
        "- Pinned conversations come first; archived ones wait under *Archived*.\n"
        "- Deleted conversations can be restored for 30 days.",
    ),
    (
        "Why did a tile stay yellow after the worker crashed?",
        "It cannot any more: a tile is yellow only while a worker holds the turn's lock. When a worker "
        "dies its lock expires, the sweeper seals the turn as *interrupted*, and the text so far is kept.",
    ),
]


class Command(BaseCommand):
    help = "Create the demo user, workspace and a few chats if they do not exist."

    def add_arguments(self, parser):
        parser.add_argument("--chats", type=int, default=None, help="Ensure the demo workspace holds at least N chats.")
        parser.add_argument("--json", action="store_true", help="Print what exists as JSON.")

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("Demo data is created only with DJANGO_DEBUG=1: its user's password is public.")
        self._seed(**options)

    @transaction.atomic
    def _seed(self, **options):
        User = get_user_model()
        username, password = settings.MOTHERSHIP_DEMO_USERNAME, settings.MOTHERSHIP_DEMO_PASSWORD
        user = User.objects.filter(username=username).first()
        created_user = user is None
        if created_user:
            user = User.objects.create_user(username=username, password=password)
        elif user.is_staff or user.is_superuser:  # made by an older version, which gave it the admin
            User.objects.filter(pk=user.pk).update(is_staff=False, is_superuser=False)
        workspace = Workspace.objects.filter(name=settings.MOTHERSHIP_DEMO_WORKSPACE, memberships__user=user).first()
        if workspace is None:
            workspace = services.workspace_create(name=settings.MOTHERSHIP_DEMO_WORKSPACE, owner=user)
        existing = Chat.objects.filter(workspace=workspace).count()
        wanted = max(options["chats"] or 0, len(DEMO_TITLES) if existing == 0 else 0)
        # With the demo tool server configured (``make run`` does), its chats may call its tools.
        tools = ["demo.*"] if any(server.name == "demo" for server in settings.MCP_SERVERS) else []
        new_chats = [
            Chat(
                workspace=workspace,
                created_by=user,
                title=DEMO_TITLES[i] if i < len(DEMO_TITLES) else f"Demo chat {i + 1}",
                tools=tools,
            )
            for i in range(existing, wanted)
        ]
        Chat.objects.bulk_create(new_chats, batch_size=500)
        for chat, (question, answer) in zip(new_chats, DEMO_EXCHANGES[existing:], strict=False):  # the titled ones
            asked = Message.objects.create(chat=chat, role=Message.Role.USER, content=question)
            reply = Message.objects.create(chat=chat, role=Message.Role.ASSISTANT, content=answer, parent=asked)
            Chat.objects.filter(pk=chat.pk).update(leaf_id=reply.pk)
        summary = {
            "user": username,
            "user_created": created_user,
            "workspace": str(workspace.id),
            "chats": existing + len(new_chats),
            "chats_created": len(new_chats),
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            self.stdout.write(
                f"demo user {username!r} ({'created' if created_user else 'exists'}), workspace {workspace.name!r}, "
                f"{summary['chats']} chats ({len(new_chats)} new)"
            )
