"""Starting a turn: whose it is (the per-user cap and budget hold the sender, on Regenerate,
Retry and Continue too), which model prices and continues it (the chat's own), and what the
start writes (a closed chat reopens; a new turn is no continuation)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.utils import timezone

from chats.models import Chat, Message
from mothership.infra.llm_models import parse_llm_models
from spend.services import BudgetExceeded, budget_set
from streams.models import Stream
from streams.services import CannotAnswerAgain, TooManyTurns, stream_answer_again, stream_cancel, stream_start
from tests import factories
from tests.factories import spent

pytestmark = pytest.mark.django_db(transaction=True)

CHEAP = {"input": 0.0, "cache_read": 0.0, "cache_write": 0.0, "output": 0.0}
PRICEY = {"input": 1000.0, "cache_read": 100.0, "cache_write": 1250.0, "output": 5000.0}


@pytest.fixture(autouse=True)
def no_worker(turns_not_enqueued):
    return turns_not_enqueued


@pytest.fixture
def two_models(settings):
    """The default model cannot continue and costs nothing; the other ("pricey") continues and costs a lot."""
    entries = [
        {"id": "plain", "provider": "openai", "model": "plain-x", "base_url": "http://127.0.0.1:9/v1", "prices": CHEAP},
        {"id": "pricey", "provider": "local", "prefill": True, "prices": PRICEY},
    ]
    settings.LLM_MODELS = parse_llm_models(json.dumps(entries), {"OPENAI_API_KEY": "k"}, max_tokens=100)
    return settings


def _stopped_reply(chat, user):
    """The member's turn, stopped before it ran, with some kept text (as a worker's seal writes it)."""
    turn = stream_start(chat=chat, content="tell me everything", user=user)
    stream_cancel(chat=chat, stream_id=turn.stream.id, reason="user")
    Message.objects.filter(pk=turn.assistant_message.pk).update(content="The first half,")
    return turn


def test_another_members_live_turns_do_not_count_against_a_members_cap(settings, user, workspace):
    settings.MOTHERSHIP_MAX_CONCURRENT_TURNS = 2
    bob = factories.MembershipFactory(workspace=workspace).user
    for _ in range(2):
        stream_start(chat=factories.ChatFactory(workspace=workspace), content="hi", user=bob)

    mine = stream_start(chat=factories.ChatFactory(workspace=workspace), content="hi", user=user)

    assert Stream.objects.get(pk=mine.stream.pk).started_by_id == user.pk
    with pytest.raises(TooManyTurns):  # bob himself is at the cap
        stream_start(chat=factories.ChatFactory(workspace=workspace), content="hi", user=bob)


@pytest.mark.parametrize("continues", [False, True], ids=["regenerate", "continue"])
def test_answering_again_is_the_asking_members_turn_held_to_their_cap_and_budget(settings, chat, user, workspace, continues):
    stopped = _stopped_reply(chat, user)

    again = stream_answer_again(chat=chat, message_id=stopped.assistant_message.pk, continues=continues, user=user)
    assert Stream.objects.get(pk=again.stream.pk).started_by_id == user.pk
    stream_cancel(chat=chat, stream_id=again.stream.id, reason="user")

    # At the cap (a turn live elsewhere), the member cannot answer again either.
    settings.MOTHERSHIP_MAX_CONCURRENT_TURNS = 1
    elsewhere = stream_start(chat=factories.ChatFactory(workspace=workspace), content="hi", user=user)
    last = again.assistant_message.pk  # the shown reply now (a regenerated one is a new version)
    with pytest.raises(TooManyTurns):
        stream_answer_again(chat=chat, message_id=last, continues=continues, user=user)
    stream_cancel(chat=elsewhere.stream.chat, stream_id=elsewhere.stream.id, reason="user")

    # Past their own daily budget, neither.
    budget_set(workspace_id=workspace.pk, monthly_usd=None, member_daily_usd=Decimal("0.10"))
    spent(workspace, "0.10", user=user)
    with pytest.raises(BudgetExceeded):
        stream_answer_again(chat=chat, message_id=last, continues=continues, user=user)


def test_continue_asks_the_chats_own_model_whether_it_can_continue(two_models, user, workspace):
    can = factories.ChatFactory(workspace=workspace, model_id="pricey")
    cannot = factories.ChatFactory(workspace=workspace)  # names none: the default model
    for chat in (can, cannot):
        stopped = _stopped_reply(chat, user)
        if chat is can:
            again = stream_answer_again(chat=chat, message_id=stopped.assistant_message.pk, continues=True, user=user)
            assert Stream.objects.get(pk=again.stream.pk).continues is True
        else:
            with pytest.raises(CannotAnswerAgain, match="cannot continue"):
                stream_answer_again(chat=chat, message_id=stopped.assistant_message.pk, continues=True, user=user)


def test_the_budget_prices_the_prompt_at_the_chats_own_model(two_models, user, workspace):
    # A $1 month; 4,000 characters (1,000 tokens) cost $1 at the pricey model, nothing at the default.
    budget_set(workspace_id=workspace.pk, monthly_usd=Decimal("1"), member_daily_usd=None)
    pricey = factories.ChatFactory(workspace=workspace, model_id="pricey")
    cheap = factories.ChatFactory(workspace=workspace)

    with pytest.raises(BudgetExceeded):
        stream_start(chat=pricey, content="x" * 4000, user=user)
    assert not Stream.objects.filter(chat=pricey).exists()
    assert stream_start(chat=cheap, content="x" * 4000, user=user).stream.model_id == "plain"


def test_a_new_turn_reopens_a_closed_chat(chat):
    Chat.objects.filter(pk=chat.pk).update(closed_at=timezone.now())
    stream_start(chat=chat, content="back again")
    assert Chat.objects.get(pk=chat.pk).closed_at is None


def test_a_new_turn_is_not_a_continuation(chat):
    turn = stream_start(chat=chat, content="hi")
    assert Stream.objects.get(pk=turn.stream.pk).continues is False


def test_a_regenerate_starts_a_new_reply_from_nothing_and_keeps_the_old(chat, user):
    stopped = _stopped_reply(chat, user)
    Message.objects.filter(pk=stopped.assistant_message.pk).update(tool_calls=[{"id": "c1", "tool": "demo.roll"}])

    again = stream_answer_again(chat=chat, message_id=stopped.assistant_message.pk, continues=False, user=user)

    new = Message.objects.get(pk=again.assistant_message.pk)
    assert (new.content, new.tool_calls, new.status) == ("", [], "partial")
    kept = Message.objects.get(pk=stopped.assistant_message.pk)  # the attempt before, kept as a version
    assert (kept.content, kept.tool_calls, kept.status) == ("The first half,", [{"id": "c1", "tool": "demo.roll"}], "cancelled")


def test_a_plain_sends_statements_are_compiled_before_its_transaction_and_a_retrys_inside(monkeypatch, chat, user):
    """SQLite lets one writer in at a time: a plain send's transaction only runs statements compiled
    before it (a burst's sends queued on the ORM compiling inside it). A retry reads inside it first."""
    from django.db import connection

    from mothership.infra import statements

    compiled_in_transaction = []
    for name in ("update", "insert"):
        original = getattr(statements, name)

        def recording(*args, _original=original, **kwargs):
            compiled_in_transaction.append(connection.in_atomic_block)
            return _original(*args, **kwargs)

        monkeypatch.setattr(statements, name, recording)
    turn = stream_start(chat=chat, user=user, content="hello")
    assert compiled_in_transaction and not any(compiled_in_transaction)
    assert Message.objects.filter(chat=chat).count() == 2 and Stream.objects.get(pk=turn.stream.pk).status == "queued"
    stream_cancel(chat=chat, stream_id=turn.stream.pk)
    compiled_in_transaction.clear()
    stream_answer_again(chat=Chat.objects.get(pk=chat.pk), user=user, message_id=turn.assistant_message.pk, continues=False)
    assert compiled_in_transaction and all(compiled_in_transaction)
