"""The reconciled chat view: a chat's marker checked against its liveness lock, with its tile's badge.

It composes ``chats`` (membership, chats, messages), ``streams`` (locks, the last stream, the
live snapshot) and ``warming`` (the badge), which is why it lives above all three.
"""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db.models import F, OuterRef, QuerySet, Subquery
from rest_framework.authtoken.models import Token

from chats.models import Chat, ChatVisit, Message, Workspace
from chats.selectors import chat_get_for_member, chat_messages_page, member_chats, parse_uuid
from chats.services import chat_markers_repair
from mothership import tokens
from mothership.celery import background_queue
from mothership.infra import cursors, metrics
from mothership.infra.redis import get_redis
from mothership.models import ApiToken, UserPreferences
from streams.models import Stream
from streams.providers import model_get
from streams.selectors import Liveness, stream_snapshot, streams_live_counts, streams_liveness
from streams.tools import tool_catalog

logger = logging.getLogger(__name__)

READ_REPAIR_LIMIT = 100
CHAT_PAGE = 100  # chats per page of the list and the dashboard
MESSAGE_PAGE = 100  # the latest messages a chat's detail carries (earlier ones: chat_messages_page)
CHAT_ORDER = ["updated_at", "created_at", "id"]  # newest first


@dataclass
class ChatView:
    """A chat as clients see it: the marker reconciled against the liveness lock."""

    chat: Chat
    active_stream_id: uuid.UUID | None
    liveness: str  # "verified" | "unknown"
    last_stream_status: str | None
    last_message: str
    warming: dict | None = None  # {"enabled", "nextWarmAt", "stopReason"} for the tile badge
    last_stream_reason: str = ""  # why the last turn ended so (a failed turn's reason, shown on hover)
    last_event_at: int | None = None  # epoch ms of the live stream's latest event
    last_finished_at: datetime.datetime | None = None  # when the last turn ended
    seen_at: datetime.datetime | None = None  # when this user last had the chat open (lists only)
    waiting_call: str | None = None  # the tool call the live turn waits on a person for
    running_tool: tuple[str, int] | None = None  # the tool the live turn runs, since (epoch ms)

    @property
    def running_seconds(self) -> int | None:
        return None if self.running_tool is None else max(0, int(time.time() - self.running_tool[1] / 1000))

    @property
    def unread(self) -> bool:
        """A reply ended after this user last had the chat open (never opened: nothing is new)."""
        return (
            self.active_stream_id is None
            and self.seen_at is not None
            and self.last_finished_at is not None
            and self.last_finished_at > self.seen_at
        )

    @property
    def quiet_seconds(self) -> int | None:
        """How long the live stream has said nothing, once it has said something."""
        if self.active_stream_id is None or self.last_event_at is None or self.queued:
            return None
        return max(0, int(time.time() - self.last_event_at / 1000))

    @property
    def stalled(self) -> bool:
        """Streaming, its worker alive, but no event for MOTHERSHIP_STALL_SECONDS."""
        quiet = self.quiet_seconds
        return quiet is not None and quiet >= settings.MOTHERSHIP_STALL_SECONDS

    @property
    def queued(self) -> bool:
        """Live but not yet taken by a worker (every worker's turns are busy)."""
        return self.active_stream_id is not None and self.last_stream_status == "queued"

    @property
    def state(self) -> str:
        if self.active_stream_id is not None:
            return "waiting" if self.waiting_call else "streaming"
        if self.last_stream_status in Stream.LIVE_STATUSES and self.liveness == "verified":
            # Its lock is gone but the sweeper has not sealed it yet: its worker is dead.
            return "interrupted"
        if self.last_stream_status in ("cancelled", "interrupted", "failed"):
            return self.last_stream_status
        return "idle"


def _tile_warming(chat: Chat) -> dict | None:
    if getattr(chat, "warming_enabled", None) is None:
        return None
    next_at = getattr(chat, "warming_next_at", None)
    return {
        "enabled": bool(chat.warming_enabled),
        "nextWarmAt": int(next_at.timestamp() * 1000) if next_at else None,
        "stopReason": chat.warming_stop_reason or None,
    }


def annotated_chats(qs: QuerySet[Chat]) -> QuerySet[Chat]:
    """Chats with what their views need (last stream status, last message, warming badge)."""
    last_stream = Stream.objects.filter(chat=OuterRef("pk")).order_by("-created_at")
    last_message = Message.objects.filter(chat=OuterRef("pk")).exclude(content="").order_by("-created_at")
    return qs.annotate(
        last_stream_status=Subquery(last_stream.values("status")[:1]),
        last_stream_reason=Subquery(last_stream.values("reason")[:1]),
        last_stream_finished_at=Subquery(last_stream.values("finished_at")[:1]),
        last_message_content=Subquery(last_message.values("content")[:1]),
        # The warming badge, through the 1:1 join (NULL when the chat has no schedule yet).
        warming_enabled=F("warming__enabled"),
        warming_next_at=F("warming__next_warm_at"),
        warming_stop_reason=F("warming__stop_reason"),
    )


def _liveness(marked: list[Chat]) -> Liveness | None:
    """One MGET for every marked chat: its lock's owner, when its stream last said anything, and
    the tool call it waits on a person for. None when Redis is unreachable (liveness unknown)."""
    try:
        return streams_liveness([(c.id, c.active_stream_id) for c in marked])
    except redis.RedisError:
        logger.warning("liveness unknown: Redis unreachable while reconciling %d chats", len(marked))
        return None


def _reconcile(chats: list[Chat], *, repair: bool = True, check: bool = True) -> list[ChatView]:
    """Read-time reconciliation: one MGET for every chat whose marker is set.

    Verified absent → not running; a different owner → the Redis owner wins; Redis
    unreachable → liveness "unknown" and the stored marker is kept. Stale rows are repaired
    in one compare-and-set UPDATE.
    """
    last_event: dict[str, int | None] = {}
    waiting: dict[str, str | None] = {}
    running: dict[str, tuple[str, int] | None] = {}
    owners = None
    if check:
        if (live := _liveness([c for c in chats if c.active_stream_id is not None])) is not None:
            owners, last_event, waiting, running = live.owners, live.last_event, live.waiting, live.running
    else:  # only for measuring what reconciliation costs (bench/reconcile.py)
        repair = False
    views, repairs = [], {}
    for chat in chats:
        active, liveness = chat.active_stream_id, "verified"
        if active is not None:
            if owners is None:
                liveness = "unknown"
            else:
                owner = owners.get(str(chat.id))
                if owner != str(active):  # the common case (the owner is the marker) parses nothing
                    active = parse_uuid(owner) if owner else None
                if active != chat.active_stream_id:
                    repairs[chat.id] = (chat.active_stream_id, active)
        views.append(
            ChatView(
                chat=chat,
                active_stream_id=active,
                liveness=liveness,
                last_stream_status=getattr(chat, "last_stream_status", None),
                last_message=(getattr(chat, "last_message_content", None) or "")[:200],
                last_stream_reason=getattr(chat, "last_stream_reason", None) or "",
                warming=_tile_warming(chat),
                # The marker's stream only: when another owns the lock, its silence is not known here.
                last_event_at=last_event.get(str(active)) if active == chat.active_stream_id else None,
                waiting_call=waiting.get(str(active)) if active == chat.active_stream_id else None,
                running_tool=running.get(str(active)) if active == chat.active_stream_id else None,
                last_finished_at=getattr(chat, "last_stream_finished_at", None),
                seen_at=getattr(chat, "seen_at", None),
            )
        )
    if repair and repairs:
        # Bounded: the answer is already true; the write is maintenance. A read repairs at most
        # READ_REPAIR_LIMIT rows (the most recent first) and the sweeper clears the rest within
        # one MOTHERSHIP_SWEEP_INTERVAL, so a list of thousands of stale chats stays fast.
        chat_markers_repair(repairs=dict(list(repairs.items())[:READ_REPAIR_LIMIT]))
    return views


def chat_list(
    *,
    user,
    workspace: Workspace | None = None,
    cursor: str | None = None,
    limit: int = CHAT_PAGE,
    reconcile: bool = True,
    archived: bool = False,
) -> tuple[list[ChatView], str | None]:
    """One page of the user's chats, newest first: at most ``limit`` views after ``cursor``, and
    the cursor of the next page (None on the last). The first page starts with the pinned chats
    (at most ``MAX_PINNED`` a workspace), the most recently pinned first; the pages after it hold
    the rest. Archived chats are left out (``archived``: only they, pinned or not), and so are new
    chats nobody has sent a message to yet. Raises
    ``cursors.BadCursor``."""
    # An untitled chat nobody has sent to yet (a "New chat" left empty) is not listed: a first
    # message names it (``title_set``), and only then is it kept.
    qs = member_chats(user=user).filter(archived_at__isnull=not archived, title_set=True)
    if workspace is not None:
        qs = qs.filter(workspace=workspace)
    pinned: list[Chat] = []
    if not archived:
        if not cursor:
            pinned = list(_list_rows(qs.filter(pinned_at__isnull=False), user).order_by("-pinned_at", "-id"))
        qs = qs.filter(pinned_at__isnull=True)
    if cursor:
        qs = qs.filter(cursors.after(CHAT_ORDER, cursors.decode(cursor, len(CHAT_ORDER)), descending=True))
    chats = list(_list_rows(qs, user).order_by(*(f"-{field}" for field in CHAT_ORDER))[: limit + 1])
    page = chats[:limit]
    following = cursors.encode([getattr(page[-1], field) for field in CHAT_ORDER]) if len(chats) > limit else None
    return _reconcile(pinned + page, check=reconcile), following


def _list_rows(qs: QuerySet[Chat], user) -> QuerySet[Chat]:
    # Tiles never show the system prompt, which may be long; they show whether a reply is new to this user.
    seen = ChatVisit.objects.filter(chat=OuterRef("pk"), user=user).values("seen_at")[:1]
    return annotated_chats(qs.select_related("workspace").defer("system_prompt")).annotate(seen_at=Subquery(seen))


def reconciled_views(chats: list[Chat]) -> list[ChatView]:
    """Views of already-annotated chats, reconciled with one MGET and no repair (admin pages)."""
    return _reconcile(chats, repair=False)


def chat_views_by_id(chat_ids) -> list[ChatView]:
    """Reconciled views of these chats (no membership check: callers push to member groups). The
    trash and the archive left out: a turn that seals after its chat was deleted must not bring
    the tile back (a turn in an archived chat takes it out of the archive first); and a new chat
    until its first message (or a title) names it."""
    chats = Chat.objects.filter(pk__in=list(chat_ids), deleted_at__isnull=True, archived_at__isnull=True, title_set=True)
    return _reconcile(list(annotated_chats(chats).select_related("workspace")))


@dataclass
class ChatDetail:
    view: ChatView
    messages: list[Message]  # the latest MESSAGE_PAGE, oldest first
    stream: dict | None
    messages_cursor: str | None = None  # of the messages before these (None: these are all)


def chat_detail(*, user, chat_id) -> ChatDetail:
    chat = chat_get_for_member(user=user, chat_id=chat_id)
    chat = annotated_chats(Chat.objects.filter(pk=chat.pk)).select_related("workspace").get()
    view = _reconcile([chat])[0]
    messages, earlier = chat_messages_page(chat=chat, limit=MESSAGE_PAGE)
    snapshot = stream_snapshot(stream_id=view.active_stream_id) if view.active_stream_id else None
    return ChatDetail(view=view, messages=messages, stream=snapshot, messages_cursor=earlier)


def chat_tool_choices(patterns) -> list[dict]:
    """Each configured tool server with whether the chat has all its tools, and each listed tool
    with whether the chat has it."""
    chosen = set(patterns or ())
    servers = []
    for server in tool_catalog():
        every = f"{server['name']}.*" in chosen
        tools = [{**tool, "on": every or tool["name"] in chosen} for tool in server["tools"] or ()]
        servers.append({**server, "all": every, "tools": tools, "listed": server["tools"] is not None})
    return servers


# --- Named API tokens and preferences (the settings pages) ----------------------------------


def api_tokens_list(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)


def api_token_for_key(*, key: str) -> ApiToken | None:
    """The named token whose key this is, with its user; None for anything else."""
    if not tokens.is_named_key(key) or len(key) > 100:
        return None
    return ApiToken.objects.select_related("user").filter(key_hash=tokens.key_digest(key)).first()


def sign_in_token(*, user) -> Token | None:
    """The token ``POST /api/auth/token`` gives ``user`` (DRF's, one per user), when they have one."""
    return Token.objects.filter(user=user).first()


def preferences_get(*, user) -> UserPreferences:
    """``user``'s preferences; the defaults (unsaved) for someone who never chose, or not signed in."""
    if getattr(user, "is_authenticated", False):
        found = UserPreferences.objects.filter(user=user).first()
        if found is not None:
            return found
        return UserPreferences(user=user)
    return UserPreferences()


def user_default_model(*, user) -> str:
    """The model id ``user``'s new chats start on: their choice while LLM_MODELS still offers it, else
    "" (the deployment's default)."""
    chosen = preferences_get(user=user).default_model
    return chosen if chosen and model_get(chosen) is not None else ""


# kombu's Redis transport keeps a queue's messages of each priority in a list of its own.
_PRIORITY_SEPARATOR, _PRIORITY_STEPS = "\x06\x16", (0, 3, 6, 9)


def queue_depth(queue: str) -> int:
    """Messages waiting in a Celery queue (every priority's list), in one round trip."""
    pipe = get_redis().pipeline(transaction=False)
    for step in _PRIORITY_STEPS:
        pipe.llen(queue if step == 0 else f"{queue}{_PRIORITY_SEPARATOR}{step}")
    return sum(pipe.execute())


def metrics_gauges() -> list[metrics.Gauge]:
    """The gauges ``/metrics`` reads from their source of truth at each scrape: the database, the
    liveness locks and the Celery queues (never counted, so never out of step)."""
    live, stuck = streams_live_counts()
    turns = settings.CELERY_TASK_DEFAULT_QUEUE
    return [
        metrics.Gauge("mothership_streams_live", "Turns queued or streaming now (the database).", live),
        metrics.Gauge(
            "mothership_streams_stuck",
            "Live turns older than the lock's TTL whose chat's lock is not theirs: the sweeper's to seal.",
            stuck,
        ),
        metrics.Gauge("mothership_turn_queue_depth", "Turns waiting in the turn queue for a worker.", queue_depth(turns)),
        metrics.Gauge(
            "mothership_background_queue_depth",
            "Tasks (warms, sweeps, dispatch) waiting in the background queue.",
            queue_depth(background_queue(turns)),
        ),
    ]
