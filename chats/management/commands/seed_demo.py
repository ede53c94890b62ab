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

# Each demo chat opens on a first exchange a new user learns from: a reply in Markdown (a list, a
# table, a code block), an ordinary prompt's answer, one sentence on cache warming and, when the
# demo tool server is configured, a tool call as the local model makes it (``/tool``).
WELCOME = """## Welcome to Mothership

Every conversation is a tile on the dashboard, and its colour tells the truth about its reply:

| Tile | It means |
|------|----------|
| yellow | a model is writing the reply now |
| grey | the reply was stopped; the text so far is kept |
| orange | the reply was interrupted (a worker died); the text so far is kept |
| red | the reply failed, saying why |

- **Send** a message and the reply streams in; **Stop** (or Esc) ends exactly that reply.
- **Edit** a question or **Regenerate** a reply: the old version stays (‹ 1 / 2 ›).
- Press **?** for the keyboard shortcuts.

On the offline local model, two commands show the rest:

```text
/echo Any **Markdown**, repeated word for word
/tool demo.roll {"sides": 6, "count": 2}
```"""
DEMO_EXCHANGES = [
    ("Welcome to Mothership", "What can I do here?", WELCOME),
    (
        "Release notes draft",
        "Draft three bullet points for the release notes.",
        "- Conversations keep every version of an edited question or a regenerated reply.\n"
        "- Pinned conversations come first; archived ones wait under *Archived*.\n"
        "- Deleted conversations can be restored for 30 days.",
    ),
    (
        "What is cache warming?",
        "What does cache warming do, in one sentence?",
        "Cache warming sends a tiny request every few minutes while you are away, so the model's prompt "
        "cache of this conversation stays warm and your next message is read from it at a tenth of the "
        "price; it is off until you turn it on, and it stops itself when it would cost more than it saves.",
    ),
]
DICE = {"sides": 6, "count": 2}
TOOL_EXCHANGE = (
    "Roll the dice (a tool call)",
    "/tool demo.roll " + json.dumps(DICE),
    "4 + 5 = 9",
    [
        {
            "callId": "call_demo_roll",
            "tool": "demo.roll",
            "arguments": DICE,
            "status": "ok",
            "content": "4 + 5 = 9",
            "durationMs": 12,
        }
    ],
)


def demo_exchanges(*, tools: bool) -> list[tuple[str, str, str, list]]:
    """The titled demo chats, each (title, question, answer, the answer's tool calls)."""
    return [(*exchange, []) for exchange in DEMO_EXCHANGES] + ([TOOL_EXCHANGE] if tools else [])


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
        # With the demo tool server configured (``make run`` does), its chats may call its tools.
        tools = ["demo.*"] if any(server.name == "demo" for server in settings.MCP_SERVERS) else []
        exchanges = demo_exchanges(tools=bool(tools))
        wanted = max(options["chats"] or 0, len(exchanges) if existing == 0 else 0)
        new_chats = [
            Chat(
                workspace=workspace,
                created_by=user,
                title=exchanges[i][0] if i < len(exchanges) else f"Demo chat {i + 1}",
                tools=tools,
            )
            for i in range(existing, wanted)
        ]
        Chat.objects.bulk_create(new_chats, batch_size=500)
        for chat, (_, question, answer, calls) in zip(new_chats, exchanges[existing:], strict=False):  # the titled ones
            asked = Message.objects.create(chat=chat, role=Message.Role.USER, content=question)
            reply = Message.objects.create(chat=chat, role=Message.Role.ASSISTANT, content=answer, parent=asked, tool_calls=calls)
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
