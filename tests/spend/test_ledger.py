"""The ledger: one charge per turn and per warm, idempotent by id, its running totals equal to its sums."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from chats.services import chat_create
from spend import counters
from spend.models import Charge, MemberDaySpend, WorkspaceMonthSpend
from spend.services import ChargeSpec, charge_record, charges_record
from streams.models import Stream
from streams.providers import Usage
from streams.providers.pricing import usage_cost_nanousd
from streams.services import stream_cancel, stream_finalize, stream_start
from streams.services.sweep import stream_interrupt_orphan
from tests.support.turns import run_turn
from warming.models import WarmingSchedule
from warming.tasks import warm_batch

pytestmark = pytest.mark.django_db(transaction=True)


def _turn_charge(chat, charge_id, *, user, at, cost: int) -> ChargeSpec:
    return ChargeSpec(
        charge_id=charge_id,
        kind="turn",
        workspace_id=chat.workspace_id,
        user_id=user.pk,
        chat_id=chat.pk,
        model="m",
        tokens={"input_tokens": 10, "output_tokens": 5},
        estimated=True,
        cost_nanousd=cost,
        at=at,
    )


def _ledger_matches_totals(workspace) -> None:
    months = WorkspaceMonthSpend.objects.filter(workspace=workspace)
    for total in months:
        start = datetime.datetime.combine(total.month, datetime.time(), tzinfo=datetime.UTC)
        end = (start + datetime.timedelta(days=32)).replace(day=1)
        summed = Charge.objects.filter(workspace=workspace, at__gte=start, at__lt=end).aggregate(s=Sum("cost_nanousd"))["s"]
        assert total.cost_nanousd == summed
    for total in MemberDaySpend.objects.filter(workspace=workspace):
        start = datetime.datetime.combine(total.day, datetime.time(), tzinfo=datetime.UTC)
        summed = Charge.objects.filter(
            workspace=workspace, user=total.user, at__gte=start, at__lt=start + datetime.timedelta(days=1)
        ).aggregate(s=Sum("cost_nanousd"))["s"]
        assert total.cost_nanousd == summed


def test_a_completed_turn_writes_one_charge_with_its_reported_usage(inline_turns, chat, user):
    # Given a member's turn that ran to its end
    turn = stream_start(chat=chat, content="what is a ledger?", user=user)
    from streams.services import stream_run

    assert stream_run(stream_id=turn.stream.id) == "completed"
    message = turn.assistant_message
    message.refresh_from_db()

    # Then the ledger holds one charge, by the stream's id, at what the model reported
    charge = Charge.objects.get()
    assert charge.id == turn.stream.id and charge.kind == "turn"
    assert (charge.workspace_id, charge.user_id, charge.chat_id) == (chat.workspace_id, user.pk, chat.pk)
    usage = Usage(**message.usage)
    assert usage.output_tokens == 10 and not charge.estimated
    assert charge.cost_nanousd == usage_cost_nanousd(usage, turn.stream.model) > 0
    assert charge.at == Stream.objects.get(pk=turn.stream.id).created_at
    # And the running totals are the ledger's sums
    assert WorkspaceMonthSpend.objects.get(workspace=chat.workspace).cost_nanousd == charge.cost_nanousd
    assert MemberDaySpend.objects.get(workspace=chat.workspace, user=user).cost_nanousd == charge.cost_nanousd
    # And the live counter (seeded at the claim) moved from the turn's estimate to the ledger's figure
    scope = counters.Scope.of(workspace_id=chat.workspace_id, user_id=user.pk, at=charge.at)
    assert counters.spent(scope, seed=lambda s: (0, 0)) == (charge.cost_nanousd, charge.cost_nanousd)


def test_a_second_seal_or_a_second_charge_of_one_id_charges_nothing(inline_turns, chat, user):
    status, stream, _ = run_turn(chat, "hello")
    assert status == "completed"
    before = WorkspaceMonthSpend.objects.get(workspace=chat.workspace).cost_nanousd

    # When the seal is tried again, and the charge written again directly (a retried seal)
    assert not stream_finalize(stream=stream, status="completed", reason="", text="x", last_seq=0, usage=Usage(output_tokens=99))
    with transaction.atomic():
        again = charge_record(
            charge_id=stream.pk,
            kind="turn",
            workspace_id=chat.workspace_id,
            user_id=None,
            chat_id=chat.pk,
            model=stream.model,
            tokens={"output_tokens": 99},
            estimated=False,
            cost_nanousd=123_456,
            at=stream.created_at,
        )

    # Then nothing more is charged
    assert again is False
    assert Charge.objects.count() == 1
    assert WorkspaceMonthSpend.objects.get(workspace=chat.workspace).cost_nanousd == before


def test_stopped_and_swept_turns_are_charged_for_what_they_used(turns_not_enqueued, chat, user):
    # Given a turn stopped while queued, and one whose worker died after writing text
    stopped = stream_start(chat=chat, content="stop me", user=user)
    stream_cancel(chat=chat, stream_id=stopped.stream.id)
    other = chat_create(workspace=chat.workspace, title="other")
    orphan = stream_start(chat=other, content="a question of some length", user=user)
    from streams import eventlog, events, locks

    eventlog.append(
        chat_id=other.pk,
        stream_id=orphan.stream.id,
        event=events.stream_event(type="stream.delta", chat_id=other.pk, stream_id=orphan.stream.id, seq=1, text="half a"),
    )
    locks.lock_release(chat_id=other.pk, stream_id=orphan.stream.id)

    # When the sweeper seals the orphan
    assert stream_interrupt_orphan(stream=Stream.objects.get(pk=orphan.stream.id))

    # Then each has its one charge: nothing for a turn that never reached the model, an estimate
    # for the text the orphan wrote
    charges = {c.id: c for c in Charge.objects.all()}
    assert set(charges) == {stopped.stream.id, orphan.stream.id}
    assert charges[stopped.stream.id].cost_nanousd == 0
    assert charges[orphan.stream.id].estimated and charges[orphan.stream.id].output_tokens == 2
    assert charges[orphan.stream.id].cost_nanousd > 0
    _ledger_matches_totals(chat.workspace)


def test_a_warm_is_charged_once_and_a_redelivered_batch_charges_nothing(inline_turns, chat, user):
    # Given a conversation with a cached prefix, claimed for a warm
    run_turn(chat, "keep me warm")
    WarmingSchedule.objects.update_or_create(chat=chat, defaults={"enabled": True, "next_warm_at": timezone.now()})
    token = uuid.uuid4().hex
    WarmingSchedule.objects.filter(chat=chat).update(claim_token=token, claimed_at=timezone.now())

    # When its batch runs, and is delivered again
    assert warm_batch([str(chat.pk)], token) == {"warmed": 1}
    assert warm_batch([str(chat.pk)], token) == {"superseded": 1}

    # Then the warm is charged once, to the workspace (no member), at what it used
    warm = Charge.objects.get(kind="warm")
    assert warm.user_id is None and warm.chat_id == chat.pk and warm.cache_read_tokens > 0
    schedule = WarmingSchedule.objects.get(chat=chat)
    assert warm.cost_nanousd == round(schedule.last_warm_cost * 1e9)
    _ledger_matches_totals(chat.workspace)
    assert not MemberDaySpend.objects.filter(cost_nanousd__gt=Charge.objects.get(kind="turn").cost_nanousd).exists()


def test_a_batch_of_charges_writes_each_new_id_once_across_months_and_members(chat, user, make_user):
    # Given a charge already written, and a batch that repeats it, repeats a new id, and spans two
    # months and two members
    bob = make_user("bob")
    now = timezone.now()
    last_month = (now.replace(day=1) - datetime.timedelta(days=1)).replace(hour=12)

    def spec(charge_id, *, who, at, cost):
        return _turn_charge(chat, charge_id, user=who, at=at, cost=cost)

    old, new = uuid.uuid4(), uuid.uuid4()
    with transaction.atomic():
        charges_record([spec(old, who=user, at=now, cost=1_000)])
    with transaction.atomic():
        written = charges_record(
            [
                spec(old, who=user, at=now, cost=99),
                spec(new, who=bob, at=now, cost=20),
                spec(new, who=bob, at=now, cost=20),
                spec(uuid.uuid4(), who=user, at=last_month, cost=300),
                spec(uuid.uuid4(), who=bob, at=now, cost=4_000),
            ]
        )

    # Then only the three new ids are written, once each, and every total is its ledger's sum
    assert len(written) == 3 and Charge.objects.count() == 4
    assert Charge.objects.get(pk=old).cost_nanousd == 1_000
    assert Charge.objects.get(pk=new).input_tokens == 10 and Charge.objects.get(pk=new).estimated
    assert WorkspaceMonthSpend.objects.count() == 2 and MemberDaySpend.objects.count() == 3
    assert MemberDaySpend.objects.get(user=bob).cost_nanousd == 4_020
    _ledger_matches_totals(chat.workspace)


def test_a_charge_made_while_redis_had_lost_the_counters_is_not_taken_back_from_them(chat, user):
    from mothership.infra.redis import get_redis
    from spend.selectors import ledger_totals
    from tests.factories import spent

    # Given 1,000 nano-dollars in the ledger, and counters Redis has lost
    spent(chat.workspace, nanousd=1_000, user=user)
    scope = counters.Scope.of(workspace_id=chat.workspace_id, user_id=user.pk, at=timezone.now())
    get_redis().delete(scope.month_key, scope.day_key)
    turn_id = uuid.uuid4()
    live = counters.LiveCharge.of(charge_id=turn_id, scope=scope, limits=counters.Limits())

    # When a turn charges 500 while they are missing, they are seeded, it charges 200 more, and
    # its seal writes 800 to the ledger
    counters.charge_many([(live, 500)])
    assert counters.spent(scope, seed=ledger_totals) == (1_000, 1_000)
    counters.charge_many([(live, 200)])
    assert counters.spent(scope, seed=lambda s: pytest.fail("seeded again")) == (1_200, 1_200)
    with transaction.atomic():
        charges_record([_turn_charge(chat, turn_id, user=user, at=timezone.now(), cost=800)])

    # Then the counters are the ledger's sums: the 500 charged while they were missing is not taken
    # from them (it never reached them), and a second settle changes nothing
    assert counters.spent(scope, seed=lambda s: pytest.fail("seeded again")) == (1_800, 1_800)
    assert ledger_totals(scope) == (1_800, 1_800)
    counters.settle_many([(turn_id, scope, 800, None)])
    counters.charge_many([(live, 99)])  # a late frame of a sealed turn
    assert counters.spent(scope, seed=lambda s: pytest.fail("seeded again")) == (1_800, 1_800)
