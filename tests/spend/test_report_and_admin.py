"""``manage.py spend_report`` and the admin's budgets and ledger."""

from __future__ import annotations

import datetime
import io
import json
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from spend import counters
from spend.models import Budget, Charge
from tests import factories
from tests.factories import spent

pytestmark = pytest.mark.django_db(transaction=True)


def _charge(workspace, *, user=None, model="m-1", nanos=1_000_000, kind="turn", at=None) -> None:
    spent(workspace, nanousd=nanos, user=user, kind=kind, model=model, at=at)


def _run(*args) -> str:
    out = io.StringIO()
    call_command("spend_report", *args, stdout=out)
    return out.getvalue()


def test_the_report_adds_up_spend_by_workspace_user_and_model_for_a_period(workspace, user, make_user):
    # Given turns of two members on two models, a warm, another workspace, and last year's spend
    bob = make_user("bob")
    _charge(workspace, user=user, nanos=1_000_000)
    _charge(workspace, user=user, nanos=2_000_000)
    _charge(workspace, user=bob, model="m-2", nanos=500_000)
    _charge(workspace, kind="warm", nanos=30_000)
    other = factories.WorkspaceFactory(name="Other")
    _charge(other, user=user, nanos=9_000_000)
    _charge(workspace, user=user, nanos=7_000_000, at=timezone.now() - datetime.timedelta(days=400))

    # When the report for this month, of the first workspace, is asked for as JSON
    report = json.loads(_run("--workspace", str(workspace.pk), "--json"))

    # Then it has one row per user, model and kind, with the period's sums only
    rows = {(r["user"], r["model"], r["kind"]): r for r in report["rows"]}
    assert set(rows) == {("alice", "m-1", "turn"), ("bob", "m-2", "turn"), (None, "m-1", "warm")}
    assert rows[("alice", "m-1", "turn")]["charges"] == 2
    assert rows[("alice", "m-1", "turn")]["cost_usd"] == pytest.approx(0.003)
    assert rows[("alice", "m-1", "turn")]["input_tokens"] == 20
    assert report["total_usd"] == pytest.approx(0.00353)
    # And the table says the same, for every workspace
    table = _run()
    assert "Other" in table and "(warms)" in table and "0.012530" in table


def test_the_report_refuses_a_bad_period_or_workspace():
    for args, message in [
        (["--since", "yesterday"], "not a date"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "before"),
        (["--workspace", str(uuid.uuid4())], "No workspace"),
    ]:
        with pytest.raises(CommandError, match=message):
            _run(*args)


def test_the_admin_sets_a_budget_through_the_service_and_shows_the_ledger(workspace, user, make_user, client):
    root = make_user("root")
    root.is_staff = root.is_superuser = True
    root.save()
    client.force_login(root)
    _charge(workspace, user=user, nanos=1_234_567)

    # When a budget is added in the admin
    response = client.post(
        "/admin/spend/budget/add/", {"workspace": str(workspace.pk), "monthly_usd": "20", "member_daily_usd": ""}, follow=True
    )

    # Then it is saved, and Redis holds it for the turns already streaming
    assert response.status_code == 200
    budget = Budget.objects.get(workspace=workspace)
    assert (budget.monthly_usd, budget.member_daily_usd, budget.updated_by) == (20, None, root)
    assert counters.get_redis().hget(counters.limits_key(workspace.pk), "month") == b"20000000000"
    # And the ledger is listed, read only
    listing = client.get("/admin/spend/charge/")
    assert listing.status_code == 200 and "0.001235" in listing.content.decode()
    charge = Charge.objects.get()
    assert client.post(f"/admin/spend/charge/{charge.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Charge.objects.count() == 1
