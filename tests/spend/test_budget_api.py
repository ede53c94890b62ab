"""``GET|PUT /api/mothership/workspaces/<id>/budget``: members read, owners set, bad input is a 400."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from spend import counters
from spend.models import Budget
from tests import factories
from tests.factories import spent

pytestmark = pytest.mark.django_db


def _url(workspace) -> str:
    return f"/api/mothership/workspaces/{workspace.pk}/budget"


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_an_owner_sets_the_budgets_and_every_member_reads_them(api, workspace, make_user, django_capture_on_commit_callbacks):
    # Given a workspace with no budget
    member = make_user()
    factories.MembershipFactory(user=member, workspace=workspace)
    empty = _client(member).get(_url(workspace)).json()
    assert empty == {
        "workspace_id": str(workspace.pk),
        "monthly_usd": None,
        "member_daily_usd": None,
        "spent_month_usd": 0.0,
        "spent_today_usd": 0.0,
        "workspace_spent_today_usd": 0.0,
        "workspace_spent_7d_usd": 0.0,
        "notices": [],
    }

    # When its owner sets both budgets, then clears the daily one and leaves the monthly one out
    with django_capture_on_commit_callbacks(execute=True):
        set_both = api.put(_url(workspace), {"monthly_usd": 50, "member_daily_usd": 2.5}, format="json")
        cleared = api.put(_url(workspace), {"member_daily_usd": None}, format="json")

    # Then each answer is the budget as it now stands, and members read the same
    assert set_both.status_code == 200 and (set_both.json()["monthly_usd"], set_both.json()["member_daily_usd"]) == (50.0, 2.5)
    assert cleared.status_code == 200
    read = _client(member).get(_url(workspace)).json()
    assert (read["monthly_usd"], read["member_daily_usd"]) == (50.0, None)
    # And turns already streaming are held to it: Redis holds the new limits
    assert counters.get_redis().hgetall(counters.limits_key(workspace.pk)) == {b"set": b"1", b"month": b"50000000000"}


def test_only_owners_may_set_a_budget_and_non_members_see_nothing(workspace, make_user):
    member, stranger = make_user(), make_user()
    factories.MembershipFactory(user=member, workspace=workspace)

    refused = _client(member).put(_url(workspace), {"monthly_usd": 1}, format="json")
    assert refused.status_code == 403 and "owner" in refused.json()["detail"]
    assert not Budget.objects.exists()
    for method in ("get", "put"):
        response = getattr(_client(stranger), method)(_url(workspace), {"monthly_usd": 1}, format="json")
        assert response.status_code == 404
    assert _client(member).get("/api/mothership/workspaces/not-a-uuid/budget").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({"monthly_usd": "10"}, "monthly_usd"),
        ({"monthly_usd": True}, "monthly_usd"),
        ({"monthly_usd": -1}, "monthly_usd"),
        ({"member_daily_usd": 1e12}, "member_daily_usd"),
        ({"monthly_usd": 5, "weekly_usd": 1}, "weekly_usd"),
        ({}, None),
        ([1, 2], None),
    ],
)
def test_a_bad_budget_is_a_400_that_says_why_and_changes_nothing(api, workspace, body, field):
    api.put(_url(workspace), {"monthly_usd": 7}, format="json")

    response = api.put(_url(workspace), body, format="json")

    assert response.status_code == 400
    assert response.json()["detail"]
    if field:
        assert field in response.json()["errors"]
    assert Budget.objects.get(workspace=workspace).monthly_usd == 7


def test_a_budget_keeps_a_hundredth_of_a_cent(api, workspace):
    response = api.put(_url(workspace), {"monthly_usd": 0.1 + 0.2, "member_daily_usd": 0.00004}, format="json")
    assert response.status_code == 200
    assert (response.json()["monthly_usd"], response.json()["member_daily_usd"]) == (0.3, 0.0)


def test_the_budget_warns_at_80_percent_and_says_so_at_100(api, workspace, user):
    api.put(_url(workspace), {"monthly_usd": 10, "member_daily_usd": 1}, format="json")
    spent(workspace, "8.1")
    spent(workspace, "1", user=user)

    notices = api.get(_url(workspace)).json()["notices"]

    assert notices == [
        {"level": "warning", "text": "91 % of this month's workspace budget is spent."},
        {
            "level": "exceeded",
            "text": "Your daily budget is spent. Your new replies wait for tomorrow (UTC), or until an owner raises it.",
        },
    ]


def test_the_spend_read_back_is_this_months_the_members_today_and_everyones_7_days_warms_included(api, workspace, user):
    import datetime

    from django.utils import timezone

    def charge(nanos, *, who=None, kind="turn", days_ago=0):
        spent(workspace, nanousd=nanos, user=who, kind=kind, at=timezone.now() - datetime.timedelta(days=days_ago))

    charge(1_000_000, who=user)  # alice today
    charge(20_000_000)  # another member's turn today (no member: a test's shortcut), and a warm
    charge(300_000_000, kind="warm")
    charge(4_000_000_000, who=user, days_ago=6)  # within 7 days
    charge(50_000_000_000, who=user, days_ago=8)  # not

    body = api.get(_url(workspace)).json()

    assert body["spent_today_usd"] == pytest.approx(0.001)
    assert body["workspace_spent_today_usd"] == pytest.approx(0.321)
    assert body["workspace_spent_7d_usd"] == pytest.approx(4.321)


@pytest.mark.django_db(transaction=True)
def test_two_partial_budget_changes_at_once_keep_both_fields(workspace, monkeypatch):
    import threading
    from decimal import Decimal

    from django.db import connection

    from spend import services

    # Given one change (the month) paused inside its transaction
    real, paused, go_on = services.budget_set, threading.Event(), threading.Event()

    def pausing(**kw):
        if kw["monthly_usd"] == Decimal("5") and not paused.is_set():
            paused.set()
            go_on.wait(5)
        return real(**kw)

    monkeypatch.setattr(services, "budget_set", pausing)

    def change(**fields):
        try:
            services.budget_update(workspace_id=workspace.pk, **fields)
        finally:
            connection.close()

    month = threading.Thread(target=change, kwargs={"monthly_usd": Decimal("5")})
    month.start()
    assert paused.wait(5)

    # When another owner changes the daily budget meanwhile
    day = threading.Thread(target=change, kwargs={"member_daily_usd": Decimal("1")})
    day.start()
    day.join(0.5)
    go_on.set()
    month.join(10)
    day.join(10)

    # Then both changes are kept: the second waited for the first instead of overwriting it
    budget = Budget.objects.get(workspace=workspace)
    assert (budget.monthly_usd, budget.member_daily_usd) == (Decimal("5"), Decimal("1"))
