"""Budgets hold turns: a prompt that would cross one is refused before it is queued (402), a turn
whose prompt no longer fits when the worker takes it never calls the model, and a turn stops
(``cancelled / budget``, its text kept) the moment its output crosses the budget."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chats.models import Message
from spend.models import Budget, Charge
from spend.services import BudgetExceeded, budget_set
from streams import locks
from streams.models import Stream
from streams.services import stream_run, stream_start
from tests import factories
from tests.factories import spent

pytestmark = pytest.mark.django_db(transaction=True)


def _budget(workspace, *, monthly=None, daily=None) -> None:
    budget_set(
        workspace_id=workspace.pk,
        monthly_usd=None if monthly is None else Decimal(monthly),
        member_daily_usd=None if daily is None else Decimal(daily),
    )


def test_a_send_whose_prompt_would_cross_the_monthly_budget_is_a_402_and_queues_nothing(api, chat, workspace, turns_not_enqueued):
    # Given a workspace 4 cents short of its 5-dollar month
    _budget(workspace, monthly="5")
    spent(workspace, "4.96")

    # When a member sends a short message, then a long one (12,500 tokens: 3.75 cents at 3 $/M)
    short = api.post(f"/api/mothership/chats/{chat.pk}/messages", {"content": "hi"}, format="json")
    locks.lock_release(chat_id=chat.pk, stream_id=short.json()["stream_id"])
    Stream.objects.filter(pk=short.json()["stream_id"]).update(status="completed")
    long = api.post(f"/api/mothership/chats/{chat.pk}/messages", {"content": "x" * 60_000}, format="json")

    # Then the short one starts, and the long one is refused before anything is written or queued
    assert short.status_code == 201
    assert long.status_code == 402
    body = long.json()
    assert body["code"] == "budget_exceeded"
    assert "$4.96 of the $5.00 budget" in body["detail"]
    assert Message.objects.filter(chat=chat).count() == 2 and Stream.objects.count() == 1
    assert turns_not_enqueued == [short.json()["stream_id"]]
    assert locks.lock_owner(chat_id=chat.pk) is None


def test_a_members_daily_budget_stops_that_member_only(chat, workspace, user, make_user, turns_not_enqueued):
    from rest_framework.test import APIClient

    from chats.services import chat_create

    # Given a daily budget of 10 cents a member, which alice has spent
    _budget(workspace, daily="0.10")
    spent(workspace, "0.10", user=user)
    bob = make_user("bob")
    factories.MembershipFactory(user=bob, workspace=workspace)
    clients = {}
    for who in (user, bob):
        clients[who.username] = APIClient()
        clients[who.username].force_authenticate(who)

    # When both send
    refused = clients["alice"].post(f"/api/mothership/chats/{chat.pk}/messages", {"content": "hi"}, format="json")
    other = chat_create(workspace=workspace, title="bob's")
    allowed = clients["bob"].post(f"/api/mothership/chats/{other.pk}/messages", {"content": "hi"}, format="json")

    # Then only alice is held to hers
    assert refused.status_code == 402 and "daily budget" in refused.json()["detail"]
    assert allowed.status_code == 201
    locks.lock_release(chat_id=other.pk, stream_id=allowed.json()["stream_id"])


def test_regenerate_and_stop_and_send_are_held_to_the_budget_too(api, chat, workspace, inline_turns, user):
    # Given a finished reply, and a turn streaming in another chat
    first = stream_start(chat=chat, content="hello", user=user)
    stream_run(stream_id=first.stream.id)
    from chats.services import chat_create

    busy = chat_create(workspace=workspace, title="busy")
    live = stream_start(chat=busy, content="long", user=user)
    _budget(workspace, monthly="1")
    spent(workspace, "1")

    # When the member regenerates the reply, and stops the live turn to send a new one
    again = api.post(f"/api/mothership/chats/{chat.pk}/messages/{first.assistant_message.pk}/regenerate")
    interrupt = api.post(
        f"/api/mothership/chats/{busy.pk}/messages", {"content": "instead", "interrupt": str(live.stream.id)}, format="json"
    )

    # Then both are refused, and the live turn was not stopped
    assert (again.status_code, again.json()["code"]) == (402, "budget_exceeded")
    assert (interrupt.status_code, interrupt.json()["code"]) == (402, "budget_exceeded")
    assert Stream.objects.get(pk=live.stream.id).status == "queued"
    assert locks.lock_owner(chat_id=busy.pk) == str(live.stream.id)
    locks.lock_release(chat_id=busy.pk, stream_id=live.stream.id)


def test_a_queued_turn_whose_prompt_no_longer_fits_never_calls_the_model(chat, workspace, user, inline_turns, monkeypatch):
    # Given a turn queued while there was room, then the month spent by others
    turn = stream_start(chat=chat, content="hello there", user=user)
    _budget(workspace, monthly="1")
    spent(workspace, "1")
    from streams.providers.local import LocalProvider

    called = []
    monkeypatch.setattr(LocalProvider, "stream", lambda self, **kw: called.append(kw) or iter(()))

    # When the worker takes it
    status = stream_run(stream_id=turn.stream.id)

    # Then it ends cancelled at the budget, the model never called, nothing charged
    stream = Stream.objects.get(pk=turn.stream.id)
    assert (status, stream.status, stream.reason) == ("cancelled", "cancelled", "budget")
    assert called == []
    assert Charge.objects.get(pk=turn.stream.id).cost_nanousd == 0


def test_a_turn_stops_as_its_output_crosses_the_budget_with_its_text_kept(chat, workspace, user, inline_turns, settings):
    # Given a month with room for the prompt and a few tokens of a 200-token reply
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 200
    _budget(workspace, monthly="0.0003")
    turn = stream_start(chat=chat, content="go", user=user)

    # When the worker runs it
    status = stream_run(stream_id=turn.stream.id)

    # Then it stopped as a Stop would, reason budget, with the text it wrote
    stream = Stream.objects.get(pk=turn.stream.id)
    message = Message.objects.get(pk=turn.assistant_message.pk)
    assert (status, stream.reason, message.status) == ("cancelled", "budget", "cancelled")
    assert 0 < message.output_tokens < 50 and message.content
    # And what it was charged passed the budget by at most the frame that crossed it (the model
    # reported what it wrote: one token a frame here, about 2 estimated)
    charge = Charge.objects.get(pk=turn.stream.id)
    one_frame = 2 * 15 * 1000  # two tokens at 15 $/M
    assert charge.cost_nanousd <= 300_000 + one_frame
    assert Budget.objects.get(workspace=workspace).monthly_usd == Decimal("0.0003")


def test_the_send_check_prices_a_conversation_the_cache_still_holds_at_the_cache_read_price(
    chat, workspace, user, inline_turns, settings
):
    import time

    from streams.services.spending import turn_budget_check

    # Given a conversation of about 10,000 tokens whose turn just ended, and a cent left this month
    settings.MOTHERSHIP_PROMPT_CACHE_TTL = 1.0
    turn = stream_start(chat=chat, content="word " * 8_000, user=user)
    stream_run(stream_id=turn.stream.id)
    so_far = Charge.objects.get(pk=turn.stream.id).cost_nanousd
    _budget(workspace, monthly=str(Decimal(so_far + 10_000_000) / 10**9))

    # Then the next message fits while the cache holds the conversation (3 cents at 3 $/M uncached,
    # 0.3 at the cache-read price) and does not once it has expired
    turn_budget_check(chat=chat, user=user, content="and then?", model=turn.stream.model)
    time.sleep(1.1)
    with pytest.raises(BudgetExceeded):
        turn_budget_check(chat=chat, user=user, content="and then?", model=turn.stream.model)


@pytest.mark.parametrize("monthly, charged_every_delta", [(None, False), ("1000", False), ("0.0003", True)])
def test_output_is_charged_every_frame_near_the_limit_and_rarely_far_from_it(
    chat, workspace, user, inline_turns, settings, monkeypatch, monthly, charged_every_delta
):
    from spend import counters

    # Given a turn of 200 deltas, each its own frame, and no budget, a large one, or one nearly spent
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 200
    if monthly:
        _budget(workspace, monthly=monthly)
    calls = []
    real = counters.charge_many
    monkeypatch.setattr(counters, "charge_many", lambda charges, gate=False: calls.append(gate) or real(charges, gate=gate))
    turn = stream_start(chat=chat, content="go", user=user)

    # When it runs
    stream_run(stream_id=turn.stream.id)

    # Then far from a limit its frames cost a charge or two (the counters learn the rest at the
    # seal); near it, every delta is charged until the turn stops
    frame_charges = calls.count(False)
    deltas = Message.objects.get(pk=turn.assistant_message.pk).output_tokens
    if charged_every_delta:
        assert frame_charges == deltas and Stream.objects.get(pk=turn.stream.id).reason == "budget"
    else:
        assert frame_charges <= 2 and deltas == 200


@pytest.mark.parametrize("meanwhile", ["nothing", "the cache expired", "redis lost the spend counters"])
def test_the_workers_claim_prices_a_cached_conversation_at_the_cache_read_price(
    chat, workspace, user, inline_turns, settings, meanwhile
):
    import time

    from mothership.infra.redis import get_redis
    from spend import counters

    # Given a conversation of about 10,000 tokens whose turn just ended, a cent left this month,
    # and the next turn queued while the cache holds the conversation
    settings.MOTHERSHIP_PROMPT_CACHE_TTL = 1.5
    first = stream_start(chat=chat, content="word " * 8_000, user=user)
    stream_run(stream_id=first.stream.id)
    so_far = Charge.objects.get(pk=first.stream.id).cost_nanousd
    _budget(workspace, monthly=str(Decimal(so_far + 10_000_000) / 10**9))
    turn = stream_start(chat=chat, content="and then?", user=user)
    scope = counters.Scope.of(workspace_id=workspace.pk, user_id=user.pk, at=turn.stream.created_at)
    if meanwhile == "the cache expired":
        time.sleep(1.6)
    elif meanwhile == "redis lost the spend counters":
        assert get_redis().delete(scope.month_key, scope.day_key) == 2

    # When the worker takes it
    status = stream_run(stream_id=turn.stream.id)

    # Then its prompt fits at the cache-read price (0.3 cents; 3 uncached), the ledger seeding
    # what Redis lost; once the cache has expired it is refused before the model is called
    stream = Stream.objects.get(pk=turn.stream.id)
    if meanwhile == "the cache expired":
        assert (status, stream.reason) == ("cancelled", "budget")
        assert Message.objects.get(pk=turn.assistant_message.pk).content == ""
    else:
        assert status == "completed"
        month, _day = counters.spent(scope, seed=lambda s: pytest.fail("seeded again"))
        assert month == so_far + Charge.objects.get(pk=turn.stream.id).cost_nanousd


def test_a_short_question_with_a_large_file_is_held_to_the_budget_by_the_files_tokens(api, chat, workspace, turns_not_enqueued):
    # Given a workspace 4 cents short of its 5-dollar month, and a 60,000-character text file (15,000 tokens)
    _budget(workspace, monthly="5")
    spent(workspace, "4.96")
    upload = api.post(
        f"/api/mothership/chats/{chat.pk}/attachments", {"file": SimpleUploadedFile("log.txt", b"x" * 60_000)}, format="multipart"
    )
    assert upload.status_code == 201

    # When a member sends two words with the file
    sent = api.post(
        f"/api/mothership/chats/{chat.pk}/messages", {"content": "read this", "attachments": [upload.json()["id"]]}, format="json"
    )

    # Then the file's tokens count: refused before anything is written or queued
    assert sent.status_code == 402 and sent.json()["code"] == "budget_exceeded"
    assert not Message.objects.filter(chat=chat).exists() and turns_not_enqueued == []
