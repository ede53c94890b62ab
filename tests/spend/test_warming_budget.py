"""Warming checks the workspace's monthly budget before each warm and stops itself at it."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from chats.selectors import conversation_prefix
from chats.services import chat_create
from spend.models import Charge
from spend.services import budget_set
from streams.providers.local import LocalProvider
from tests.factories import spent
from tests.support.turns import run_turn
from warming.models import WarmingSchedule
from warming.services import warming_fields
from warming.spending import warm_nanousd
from warming.tasks import warm_batch

pytestmark = pytest.mark.django_db(transaction=True)


def _claimed(chats) -> str:
    token = uuid.uuid4().hex
    for chat in chats:
        WarmingSchedule.objects.update_or_create(chat=chat, defaults={"enabled": True, "next_warm_at": timezone.now()})
    WarmingSchedule.objects.filter(chat__in=chats).update(claim_token=token, claimed_at=timezone.now())
    return token


def test_a_warm_that_would_cross_the_monthly_budget_is_not_sent_and_warming_stops(inline_turns, workspace, monkeypatch):
    # Given two warmed conversations, in a workspace whose month has room for one warm only
    chats = [chat_create(workspace=workspace, title=f"c{i}") for i in range(2)]
    for chat in chats:
        WarmingSchedule.objects.create(chat=chat)
        run_turn(chat, "a question worth caching " * 20)
    budget_set(workspace_id=workspace.pk, monthly_usd=Decimal("1"), member_daily_usd=None)
    so_far = sum(c.cost_nanousd for c in Charge.objects.all())
    one_warm = warm_nanousd(model=LocalProvider().model, prefix=conversation_prefix(chat_id=chats[0].pk), cached=True)
    spent(workspace, nanousd=10**9 - so_far - one_warm * 3 // 2)
    warmed = []
    real_warm_many = LocalProvider.warm_many
    monkeypatch.setattr(
        LocalProvider, "warm_many", lambda self, prefixes: warmed.extend(prefixes) or real_warm_many(self, prefixes=prefixes)
    )

    # When their warms are due together
    outcome = warm_batch([str(c.pk) for c in chats], _claimed(chats))

    # Then one is warmed and charged, the other never sent, and its warming stopped at the budget
    assert outcome == {"warmed": 1, "budget": 1}
    assert len(warmed) == 1
    stopped = WarmingSchedule.objects.get(stop_reason="budget")
    assert not stopped.enabled and stopped.next_warm_at is None
    assert warming_fields(stopped)["stopReason"] == "budget"
    assert Charge.objects.filter(kind="warm").count() == 1
    assert WarmingSchedule.objects.get(enabled=True).warm_count == 1
