"""Start a turn: the user message, the stream and the assistant message, the marker and the lock."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Case, F, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from chats.attachments.selectors import attachments_for_send, message_attachments
from chats.attachments.service import AttachmentRefused
from chats.models import Attachment, Chat, Message, title_from
from mothership.infra import statements
from mothership.infra.prepared import PreparedRead, PreparedStatement
from mothership.infra.signals import send_logged
from mothership.infra.uuids import parse_uuid
from streams import locks
from streams.models import Stream
from streams.providers import get_provider, model_for
from streams.providers.attachments import refusal
from streams.services.spending import turn_budget_check
from streams.signals import turn_started


class StreamConflict(Exception):
    """A stream is already live in this chat."""

    def __init__(self, active_stream_id):
        super().__init__("A reply is already streaming in this chat; stop it or wait for it to finish.")
        self.active_stream_id = active_stream_id


class TooManyTurns(Exception):
    """The sender already has ``MOTHERSHIP_MAX_CONCURRENT_TURNS`` turns queued or streaming."""

    def __init__(self, limit: int):
        super().__init__(f"You already have {limit} replies running, the most at once; wait for one to finish or stop one.")


@dataclass(frozen=True)
class StartedTurn:
    stream: Stream
    user_message: Message
    assistant_message: Message


def _user_row(user_pk):
    return get_user_model().objects.filter(pk=user_pk).values_list("pk", flat=True)


def _live_turns(user_pk):
    return Stream.objects.filter(started_by=user_pk, status__in=Stream.LIVE_STATUSES).values_list("pk", flat=True)


# The sender's cap, compiled once (``mothership.infra.prepared``): the user's row locked
# (PostgreSQL; SQLite's write transaction holds the whole database), then their live turns read,
# so that one user's starts count one after another and the cap is never overrun. Two statements:
# a count in the locking statement would read the snapshot from before the wait (READ COMMITTED)
# and miss the turn that held the lock. (At most the cap's few rows: they are counted here.)
_SENDER_LOCK = PreparedRead(_user_row, kinds=(int,), lock=True)
_LIVE_TURNS = PreparedRead(_live_turns, kinds=(int,))


def _check_turn_cap(user) -> None:
    """Inside the start's transaction: ``TooManyTurns`` when ``user`` is at the cap."""
    limit = settings.MOTHERSHIP_MAX_CONCURRENT_TURNS
    if connection.vendor != "sqlite":
        _SENDER_LOCK.run(user.pk)
    if len(_LIVE_TURNS.run(user.pk)) >= limit:
        raise TooManyTurns(limit)


class CannotAnswerAgain(Exception):
    """Retry, Regenerate, Continue or Edit asked of a message it does not apply to (the reason says why)."""


def turn_attachments(*, chat: Chat, user, attachment_ids) -> list[Attachment]:
    """The files a send names (``attachments_for_send``), refused (``AttachmentRefused``, 400)
    when the chat's model cannot read one of them: the message names the model."""
    if not attachment_ids:
        return []
    files = attachments_for_send(chat=chat, user=user, ids=attachment_ids)
    _check_model_reads(chat, files)
    return files


def _check_model_reads(chat: Chat, files: list[Attachment]) -> None:
    reason = refusal(model_for(chat.model_id or None), [{"kind": a.kind, "name": a.name, "text": a.text} for a in files])
    if reason:
        raise AttachmentRefused(reason, code="model_cannot_read")


def stream_start(*, chat: Chat, content: str, user=None, attachments: list[Attachment] = ()) -> StartedTurn:
    """Create the user message, the stream and the assistant message; take the liveness lock.

    The marker is set in the same transaction that creates the stream, and the lock is taken
    before that transaction begins, so a queued stream is alive to every reader and the lock's
    SET NX is what refuses a second turn. The task is enqueued only after commit. Nothing but
    SQL runs inside the transaction (a burst of sends queues on it, on SQLite for every chat).
    ``user`` is the sender: their turns running at once are capped (``TooManyTurns``). A prompt
    that alone would cross the workspace's or the sender's budget raises ``BudgetExceeded``.
    The new messages continue the shown branch and end it. ``attachments``: the question's files
    (``turn_attachments``), sent with it from now on.
    """
    return _start(chat=chat, user=user, content=content, attachments=list(attachments))


def stream_answer_again(*, chat: Chat, message_id, continues: bool, user=None) -> StartedTurn:
    """A new turn that answers the user message of ``message_id``, the shown branch's last reply,
    again: Retry and Regenerate start it over (``continues=False``) in a new reply beside it (a
    sibling: the old one stays as a version; a reply with nothing in it is simply reused); Continue
    goes on from its kept text (the model is sent it as the start of its reply), so it stays one
    message, whose usage adds up every attempt.

    ``CannotAnswerAgain`` when the message is not the shown branch's last reply, is running, or
    (Continue) has no text or a model that cannot continue; ``StreamConflict`` while a turn is live.
    """
    if continues and not model_for(chat.model_id or None).prefill:
        raise CannotAnswerAgain("This chat's model cannot continue a reply; regenerate it instead.")
    return _start(chat=chat, user=user, again=(message_id, continues))


def stream_edit(*, chat: Chat, message_id, content: str, user=None) -> StartedTurn:
    """Edit a question: a new user message beside ``message_id`` (a sibling with ``content``; the old
    one and what followed it stay as a branch) and a turn that answers it, which becomes the shown
    branch; the new question carries the old one's files. ``CannotAnswerAgain`` when it is not one
    of the chat's user messages."""
    edited = parse_uuid(message_id)
    files = message_attachments(message_ids=[edited]).get(edited, []) if edited else []
    _check_model_reads(chat, files)
    return _start(chat=chat, user=user, content=content, edit=message_id, attachments=files)


def _shown_leaf_read(chat_id):
    newest = Message.objects.filter(chat_id=OuterRef("pk")).order_by("-created_at", "-id").values("id")[:1]
    return Chat.objects.filter(pk=chat_id, deleted_at__isnull=True).values_list("leaf_id", Coalesce("leaf_id", Subquery(newest)))


_SHOWN_LEAF = PreparedRead(_shown_leaf_read, kinds=(uuid.UUID,))  # compiled once (``mothership.infra.prepared``)


def _shown_leaf(chat: Chat) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """Before the start's transaction (a read takes no write lock): the chat's ``leaf_id`` as stored
    (what the start's UPDATE compares and sets) and the last message of its shown branch (that, or
    the newest message; None for a chat with none). The chat's row as the request read it when it
    names a leaf (the compare-and-set catches a switch since); else read. ``Chat.DoesNotExist``
    when it was deleted (or moved to the trash) since the membership check."""
    if chat.leaf_id is not None:
        return chat.leaf_id, chat.leaf_id
    found = _SHOWN_LEAF.run(chat.pk)
    if not found:
        raise Chat.DoesNotExist("No such chat.")
    return found[0]


def _reply_to_answer_again(*, chat: Chat, leaf_id, message_id, continues: bool) -> tuple[Message, Message]:
    """Inside the start's transaction (the chat's row locked): the reply and the user message it answers."""
    last = Message.objects.filter(chat_id=chat.pk, pk=leaf_id).first() if leaf_id else None
    if last is None or str(last.pk) != str(message_id) or last.role != Message.Role.ASSISTANT:
        raise CannotAnswerAgain("Only the last reply of a conversation can be retried, regenerated or continued.")
    question = Message.objects.filter(pk=last.parent_id, role=Message.Role.USER).first() if last.parent_id else None
    if question is None:
        raise CannotAnswerAgain("The message this reply answers is gone.")
    if continues and (last.status == Message.Status.COMPLETE or not last.content.strip()):
        raise CannotAnswerAgain("Only a stopped or interrupted reply with text can be continued.")
    return question, last


def _question_to_edit(*, chat: Chat, message_id) -> Message:
    edited = Message.objects.filter(chat_id=chat.pk, pk=message_id).first()
    if edited is None or edited.role != Message.Role.USER:
        raise CannotAnswerAgain("Only a message a member sent can be edited.")
    return edited


def _new_reply(chat: Chat, stream_id, parent_id) -> Message:
    return Message(
        chat_id=chat.pk, role=Message.Role.ASSISTANT, status=Message.Status.PARTIAL, stream_id=stream_id, parent_id=parent_id
    )


def _start(
    *, chat: Chat, user, content: str | None = None, again: tuple | None = None, edit=None, attachments: list | None = None
) -> StartedTurn:
    stream_id = uuid.uuid4()
    provider = get_provider(chat.model_id or None)
    files = attachments or []
    # Over budget: 402, and nothing is created or queued.
    turn_budget_check(
        chat=chat, user=user, content=content or "", model=provider.model, attached_tokens=sum(a.tokens for a in files)
    )
    if not locks.lock_acquire(chat_id=chat.pk, stream_id=stream_id):
        raise StreamConflict(locks.lock_owner(chat_id=chat.pk))
    try:
        for attempt in range(2):
            # Read outside the transaction: a burst of sends queues on its writes (on SQLite, every
            # chat's). The lock held, no other turn of this chat moves the leaf; a branch switch that
            # lands meanwhile fails the compare-and-set, and this start reads the row again, once.
            stored_leaf, leaf_id = _shown_leaf(chat)
            try:
                turn = _begin(chat, user, stream_id, provider, content, again, edit, stored_leaf, leaf_id, files)
                break
            except _LeafMoved:
                if attempt:
                    raise CannotAnswerAgain(
                        "Another version of this conversation was chosen meanwhile; nothing was sent. Look again."
                    ) from None
                chat.leaf_id = None  # the request's copy of the row was behind: read it
    except BaseException:
        locks.lock_release(chat_id=chat.pk, stream_id=stream_id)
        raise
    return turn


class _LeafMoved(Exception):
    """The chat's leaf is not the one this start read (a branch switch, or a stale copy of the row)."""


def _begin(chat: Chat, user, stream_id, provider, content, again, edit, stored_leaf, leaf_id, files) -> StartedTurn:
    """The start's transaction: the messages, the marker and the new leaf (compare-and-set against
    ``stored_leaf``: ``_LeafMoved``), the sender's cap, the stream; the task after commit.

    A plain new message (no retry, no edit, no files: nearly every send) has every statement
    compiled before the transaction (``_Writes``), so the transaction holds SQLite's one writer
    turn (the chat's row, on PostgreSQL) only for the database's own work."""
    what = _What(chat, user, stream_id, provider, stored_leaf, content, files)
    writes = None
    if again is None and edit is None and not files:
        user_message, assistant_message = _new_question(chat, stream_id, leaf_id, content)
        writes = _Writes.compile(what, user_message, assistant_message)
    with transaction.atomic():
        if writes is None:
            continues, created = False, True
            if again is None:
                parent_id = leaf_id if edit is None else _question_to_edit(chat=chat, message_id=edit).parent_id
                user_message, assistant_message = _new_question(chat, stream_id, parent_id, content)
            else:
                message_id, continues = again
                user_message, last = _reply_to_answer_again(
                    chat=chat, leaf_id=leaf_id, message_id=message_id, continues=continues
                )
                if continues or not (last.content.strip() or last.tool_calls):
                    # Continued: its text stays, and the seal appends to it; empty: nothing to keep.
                    assistant_message, created = last, False
                    reset = {} if continues else {"content": "", "tool_calls": []}
                    Message.objects.filter(pk=last.pk).update(status=Message.Status.PARTIAL, stream_id=stream_id, **reset)
                else:  # started over: the old reply stays beside the new one, as a version
                    assistant_message = _new_reply(chat, stream_id, user_message.pk)
            writes = _Writes.compile(
                what, user_message, assistant_message, new_question=again is None, new_reply=created, continues=continues
            )
        writes.run(chat)
        chat.leaf_id = assistant_message.pk  # as the row now says (a caller that starts again reads it)
        if files and again is None:  # the question's files: sent with it, from now on part of the conversation
            # Locked, so an upload removed meanwhile is seen here (and its removal waits for this commit).
            kept = Attachment.objects.select_for_update().filter(pk__in=[a.pk for a in files]).values_list("pk", flat=True)
            if len(list(kept)) != len(files):  # (PostgreSQL takes no FOR UPDATE with COUNT)
                raise AttachmentRefused(
                    "A file of this message was removed meanwhile; nothing was sent.", status=409, code="removed"
                )
            Message.attachments.through.objects.bulk_create(
                [Message.attachments.through(message_id=user_message.pk, attachment_id=a.pk) for a in files]
            )
            Attachment.objects.filter(pk__in=[a.pk for a in files], sent_at__isnull=True).update(sent_at=timezone.now())
        transaction.on_commit(lambda: stream_enqueue(stream_id=stream_id))
        # The tile turns yellow everywhere.
        transaction.on_commit(
            lambda: send_logged(turn_started, sender=Stream, chat_id=chat.pk, workspace_id=chat.workspace_id, stream_id=stream_id)
        )
    return StartedTurn(stream=writes.stream, user_message=user_message, assistant_message=assistant_message)


def _chat_update_built(chat_pk, stream_id, now, new_leaf, stored_leaf=None, title=None) -> statements.Statement:
    """The start's UPDATE of its chat, where it still has the leaf ``stored_leaf``. A stale marker
    (its lock is gone) is simply replaced; the sweeper finalizes that stream. An untitled chat takes
    its title (``title``, from its first message) in the same statement."""
    named = Case(When(title_set=False, then=Value(title)), default=F("title")) if title is not None else F("title")
    return statements.update(
        Chat.objects.filter(pk=chat_pk, deleted_at__isnull=True, leaf_id=stored_leaf),
        active_stream_id=stream_id,
        updated_at=now,
        closed_at=None,
        archived_at=None,  # a new turn brings an archived chat back to the lists
        title=named,
        title_set=True,
        leaf_id=new_leaf,
    )


def _chat_update_shape(leaf: bool, titled: bool) -> PreparedStatement:
    """The chat update compiled once for one shape (``mothership.infra.prepared``): with a leaf to
    compare with or none (IS NULL), a title to give or none; the arguments in ``_chat_update``'s order."""

    def build(chat_pk, stream_id, now, new_leaf, *rest):
        stored_leaf, title = (rest[0] if leaf else None), (rest[-1] if titled else None)
        return _chat_update_built(chat_pk, stream_id, now, new_leaf, stored_leaf, title)

    kinds = (uuid.UUID, uuid.UUID, datetime.datetime, uuid.UUID, *((uuid.UUID,) if leaf else ()), *((str,) if titled else ()))
    return PreparedStatement(build, kinds=kinds)


_CHAT_UPDATES = {(leaf, titled): _chat_update_shape(leaf, titled) for leaf in (False, True) for titled in (False, True)}


def _chat_update(chat_pk, stream_id, now, new_leaf, stored_leaf, title) -> statements.Statement:
    """``_chat_update_built``'s statement, from its prepared shape."""
    shape = _CHAT_UPDATES[(stored_leaf is not None, title is not None)]
    args = [
        chat_pk,
        stream_id,
        now,
        new_leaf,
        *([stored_leaf] if stored_leaf is not None else []),
        *([title] if title is not None else []),
    ]
    return shape.statement(*args)


def _new_question(chat: Chat, stream_id, parent_id, content) -> tuple[Message, Message]:
    # The messages name their stream before it exists: foreign keys are checked at commit.
    question = Message(chat_id=chat.pk, role=Message.Role.USER, content=content, stream_id=stream_id, parent_id=parent_id)
    return question, _new_reply(chat, stream_id, question.pk)


@dataclass(frozen=True)
class _What:
    """What a start writes, as ``_begin`` was given it."""

    chat: Chat
    user: object
    stream_id: uuid.UUID
    provider: object
    stored_leaf: uuid.UUID | None
    content: str | None
    files: list


@dataclass
class _Writes:
    """The start transaction's statements, compiled (``mothership.infra.statements``)."""

    chat_update: statements.Statement
    user: object
    inserts: list[statements.Statement]
    rows: list
    stream: Stream

    @classmethod
    def compile(
        cls, what: _What, user_message, assistant_message, *, new_question=True, new_reply=True, continues=False
    ) -> _Writes:
        chat, user, stream_id, provider = what.chat, what.user, what.stream_id, what.provider
        content, files = what.content, what.files
        first_words = content or (files[0].name if files else "")
        chat_update = _chat_update(
            chat.pk,
            stream_id,
            timezone.now(),
            assistant_message.pk,
            what.stored_leaf,
            title_from(first_words) if first_words else None,
        )
        stream = Stream(
            id=stream_id,
            chat_id=chat.pk,
            user_message=user_message,
            assistant_message=assistant_message,
            started_by_id=user.pk if user is not None else None,
            provider=provider.name,
            model=provider.model,
            model_id=provider.model_id,
            continues=continues,
            system_prompt=chat.system_prompt,
        )
        created = [m for m, new in ((user_message, new_question), (assistant_message, new_reply)) if new]
        inserts = [*(statements.insert(created) if created else ()), *statements.insert([stream])]
        return cls(chat_update=chat_update, user=user, inserts=inserts, rows=[*created, stream], stream=stream)

    def run(self, chat: Chat) -> None:
        # The UPDATE takes the chat's row lock (PostgreSQL; SQLite's BEGIN IMMEDIATE holds the
        # whole database), so turns of one chat start one after another.
        if not statements.execute(self.chat_update):
            if not Chat.objects.filter(pk=chat.pk, deleted_at__isnull=True).exists():
                raise Chat.DoesNotExist("No such chat.")  # deleted since the membership check
            raise _LeafMoved()
        if self.user is not None:
            _check_turn_cap(self.user)
        for statement in self.inserts:
            statements.execute(statement)
        statements.saved(self.rows)


def stream_enqueue(*, stream_id) -> None:
    """Hand a queued stream to a worker (after commit: the worker must find the rows)."""
    from streams.tasks import run_stream  # the task module imports this one

    # The task's id is the stream's: the queue keeper finds a waiting turn by it (streams.queue).
    # Nothing to declare: the message goes straight onto the queue's list (kombu's Redis transport,
    # the default exchange), which the workers declared; kombu copied and bound the queue per message.
    run_stream.apply_async(args=[str(stream_id)], task_id=str(stream_id), declare=[])
