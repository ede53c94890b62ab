"""Start a turn: the user message, the stream and the assistant message, the marker and the lock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from chats.models import Chat, Message, title_from
from mothership.infra.signals import send_logged
from streams import locks
from streams.models import Stream
from streams.providers import get_provider, model_for
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


def _check_turn_cap(user) -> None:
    """Inside the start's transaction: the user's row locked (PostgreSQL; SQLite holds the whole
    database), then their live turns counted, so that one user's starts count one after another
    and the cap is never overrun. Two statements: a count in the locking statement would read
    the snapshot from before the wait (READ COMMITTED) and miss the turn that held the lock."""
    limit = settings.MOTHERSHIP_MAX_CONCURRENT_TURNS
    get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk").first()
    if Stream.objects.filter(started_by=user.pk, status__in=Stream.LIVE_STATUSES).count() >= limit:
        raise TooManyTurns(limit)


class CannotAnswerAgain(Exception):
    """Retry, Regenerate or Continue asked of a message it does not apply to (the reason says why)."""


def stream_start(*, chat: Chat, content: str, user=None) -> StartedTurn:
    """Create the user message, the stream and the assistant message; take the liveness lock.

    The marker is set in the same transaction that creates the stream, and the lock is taken
    before that transaction begins, so a queued stream is alive to every reader and the lock's
    SET NX is what refuses a second turn. The task is enqueued only after commit. Nothing but
    SQL runs inside the transaction (a burst of sends queues on it, on SQLite for every chat).
    ``user`` is the sender: their turns running at once are capped (``TooManyTurns``). A prompt
    that alone would cross the workspace's or the sender's budget raises ``BudgetExceeded``.
    """
    return _start(chat=chat, user=user, content=content)


def stream_answer_again(*, chat: Chat, message_id, continues: bool, user=None) -> StartedTurn:
    """A new turn that answers the user message of ``message_id``, the chat's last reply, again,
    into the same message: Retry and Regenerate start it over (``continues=False``); Continue goes
    on from its kept text (the model is sent it as the start of its reply), so it stays one message.

    The message's usage adds up every attempt at it. ``CannotAnswerAgain`` when the message is
    not the chat's last reply, is running, or (Continue) has no text or a model that cannot
    continue; ``StreamConflict`` while a turn is live in the chat.
    """
    if continues and not model_for(chat.model_id or None).prefill:
        raise CannotAnswerAgain("This chat's model cannot continue a reply; regenerate it instead.")
    return _start(chat=chat, user=user, again=(message_id, continues))


def _reply_to_answer_again(*, chat: Chat, message_id, continues: bool) -> tuple[Message, Message]:
    """Inside the start's transaction (the chat's row locked): the reply and the user message it answers."""
    last = Message.objects.filter(chat_id=chat.pk).order_by("-created_at", "-id").first()
    if last is None or str(last.pk) != str(message_id) or last.role != Message.Role.ASSISTANT:
        raise CannotAnswerAgain("Only the last reply of a conversation can be retried, regenerated or continued.")
    asked = Stream.objects.filter(pk=last.stream_id).values_list("user_message_id", flat=True).first()
    question = Message.objects.filter(pk=asked).first() if asked else None
    if question is None:
        raise CannotAnswerAgain("The message this reply answers is gone.")
    if continues and (last.status == Message.Status.COMPLETE or not last.content.strip()):
        raise CannotAnswerAgain("Only a stopped or interrupted reply with text can be continued.")
    return question, last


def _start(*, chat: Chat, user, content: str | None = None, again: tuple | None = None) -> StartedTurn:
    stream_id = uuid.uuid4()
    provider = get_provider(chat.model_id or None)
    # Over budget: 402, and nothing is created or queued.
    turn_budget_check(chat=chat, user=user, content=content or "", model=provider.model)
    if not locks.lock_acquire(chat_id=chat.pk, stream_id=stream_id):
        raise StreamConflict(locks.lock_owner(chat_id=chat.pk))
    try:
        with transaction.atomic():
            # The UPDATE takes the chat's row lock (PostgreSQL; SQLite's BEGIN IMMEDIATE holds the
            # whole database), so turns of one chat start one after another.
            # A stale marker (its lock is gone) is simply replaced; the sweeper finalizes that stream.
            # An untitled chat takes its title from its first message, in the same statement.
            named = Case(When(title_set=False, then=Value(title_from(content))), default=F("title")) if content else F("title")
            if not Chat.objects.filter(pk=chat.pk, deleted_at__isnull=True).update(
                active_stream_id=stream_id, updated_at=timezone.now(), closed_at=None, title=named, title_set=True
            ):
                raise Chat.DoesNotExist("No such chat.")  # deleted (or moved to the trash) since the membership check
            if user is not None:
                _check_turn_cap(user)
            if again is None:
                # The messages name their stream before it exists: foreign keys are checked at commit.
                user_message, assistant_message = Message.objects.bulk_create(
                    [
                        Message(chat_id=chat.pk, role=Message.Role.USER, content=content, stream_id=stream_id),
                        Message(
                            chat_id=chat.pk,
                            role=Message.Role.ASSISTANT,
                            content="",
                            status=Message.Status.PARTIAL,
                            stream_id=stream_id,
                        ),
                    ]
                )
                continues = False
            else:
                message_id, continues = again
                user_message, assistant_message = _reply_to_answer_again(chat=chat, message_id=message_id, continues=continues)
                # Started over: the text goes; continued: it stays, and the seal appends to it.
                reset = {} if continues else {"content": "", "tool_calls": []}
                Message.objects.filter(pk=assistant_message.pk).update(
                    status=Message.Status.PARTIAL, stream_id=stream_id, **reset
                )
            stream = Stream.objects.create(
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
            transaction.on_commit(lambda: stream_enqueue(stream_id=stream_id))
            # The tile turns yellow everywhere.
            transaction.on_commit(
                lambda: send_logged(
                    turn_started, sender=Stream, chat_id=chat.pk, workspace_id=chat.workspace_id, stream_id=stream_id
                )
            )
    except BaseException:
        locks.lock_release(chat_id=chat.pk, stream_id=stream_id)
        raise
    return StartedTurn(stream=stream, user_message=user_message, assistant_message=assistant_message)


def stream_enqueue(*, stream_id) -> None:
    """Hand a queued stream to a worker (after commit: the worker must find the rows)."""
    from streams.tasks import run_stream  # the task module imports this one

    # The task's id is the stream's: the queue keeper finds a waiting turn by it (streams.queue).
    run_stream.apply_async(args=[str(stream_id)], task_id=str(stream_id))
