"""Spend in a real Chromium: the dashboard's figures and notices against the budgets, an owner
setting them, and a reply stopped at the budget saying so."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from chats.models import Membership
from chats.services import chat_create, workspace_create
from spend.models import Budget
from spend.services import budget_set
from streams.models import Stream
from tests import factories
from tests.factories import spent

from .conftest import SCREENSHOTS
from .pages import send as _send

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def user(make_user):
    return make_user("ada", password="pw-123456")


@pytest.fixture
def chat(user):
    workspace = workspace_create(name="Research", owner=user)
    return chat_create(workspace=workspace, title="Grant proposal")


@pytest.mark.screenshots
def test_an_owner_sets_budgets_on_the_dashboard_and_sees_the_80_and_100_percent_notices(login, user, chat, stack):
    workspace = chat.workspace
    spent(workspace, "0.85")
    login.allowed += [r"status of 402", r"status of 400"]  # the refused send and the refused budget, below
    context, page = login(user)
    panel = page.locator("#spend")
    expect(page.locator("#spend-month")).to_have_text("$0.85")
    expect(page.locator(".spend-notice")).to_have_count(0)

    # When the owner sets a 1-dollar month and 50 cents a member a day
    page.click(".spend-set summary")
    page.fill("#budget-monthly", "1")
    page.fill("#budget-daily", "0.5")
    page.click("#budget-save")

    # Then the figures are shown against them, with the 80 % notice, and the budget is saved
    expect(page.locator("#budget-status")).to_have_text("Saved.")
    expect(page.locator("#spend-month")).to_have_text("$0.85 of $1.00")
    expect(page.locator("#spend-today")).to_have_text("$0.00 of $0.50")
    expect(panel.locator(".spend-notice--warning")).to_have_text("85 % of this month's workspace budget is spent.")
    budget = Budget.objects.get(workspace=workspace)
    assert (budget.monthly_usd, budget.member_daily_usd) == (Decimal("1"), Decimal("0.5"))
    if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dashboard-spend.png"), full_page=True)

    # And once the month is spent, the page says so, and a send says why it is refused
    spent(workspace, "0.15")
    page.reload()
    expect(panel.locator(".spend-notice--exceeded")).to_contain_text("This month's workspace budget is spent.")
    page.goto(f"{stack.url}/chats/{chat.id}/")
    _send(page, "one more question")
    expect(page.locator("#composer-status")).to_contain_text("of the $1.00 budget")
    assert not Stream.objects.filter(chat=chat).exists()

    # And a bad budget is refused with the server's reason
    page.goto(stack.url + "/")
    page.click(".spend-set summary")
    page.evaluate("document.getElementById('budget-monthly').removeAttribute('min')")
    page.fill("#budget-monthly", "-3")
    page.click("#budget-save")
    expect(page.locator("#budget-status")).to_contain_text("Not saved: monthly_usd: Must be between 0")


def test_members_see_the_spend_but_not_the_budget_form(login, chat, make_user, stack):
    member = make_user("grace", password="pw-123456")
    factories.MembershipFactory(user=member, workspace=chat.workspace, role=Membership.Role.MEMBER)
    budget_set(workspace_id=chat.workspace_id, monthly_usd=Decimal("10"), member_daily_usd=None)
    context, page = login(member)
    expect(page.locator("#spend-month")).to_have_text("$0.00 of $10.00")
    expect(page.locator("#budget-form")).to_have_count(0)

    # A spend of less than a cent shows as what it is, from the server and from the page's refresh
    spent(chat.workspace, "0.0021", user=member)
    page.reload()
    expect(page.locator("#spend-month")).to_have_text("$0.0021 of $10.00")
    expect(page.locator("#spend-today")).to_have_text("$0.0021")
    spent(chat.workspace, "0.0010", user=member)
    page.evaluate("document.getElementById('spend').dispatchEvent(new Event('spend:refresh'))")
    expect(page.locator("#spend-month")).to_have_text("$0.0031 of $10.00")
    expect(page.locator("#spend-workspace-week")).to_have_text("$0.0031")


def test_a_reply_stopped_at_the_budget_says_so_live_and_after_a_reload(login, user, chat, stack):
    # Given a budget with room for the prompt and a few dozen tokens of a 400-token reply
    budget_set(workspace_id=chat.workspace_id, monthly_usd=Decimal("0.001"), member_daily_usd=None)
    context, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")

    # When the member asks
    _send(page, "tell me everything")

    # Then the reply stops at the budget, with its text, and says why
    status = page.locator(".msg--assistant").last.locator(".msg-status")
    expect(status).to_have_text("stopped: the budget is spent", timeout=15000)
    stream = Stream.objects.get(chat=chat)
    assert (stream.status, stream.reason) == ("cancelled", "budget")
    page.reload()
    expect(page.locator(".msg--assistant").last.locator(".msg-status")).to_have_text("stopped: the budget is spent")
    assert page.locator(".msg--assistant .msg-content").last.inner_text().strip()
