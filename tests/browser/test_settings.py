"""The settings pages and the workspace page in a real chromium: each form clicked through as a
person would, and axe-core over every tab and the workspace page, light and dark, desktop and
phone, with no violation of any impact."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from chats.models import Chat, Membership
from chats.services import membership_add, workspace_create
from mothership.models import ApiToken, UserPreferences

from .conftest import SCREENSHOTS
from .pages import axe_violations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

TABS = ["Profile", "Password", "API tokens", "Appearance", "Default model", "Workspaces"]
VIEWPORTS = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 390, "height": 844}}
STRONG = "violet-harbour-lantern-42"


def _shot(page, name: str) -> None:
    if os.environ.get("MOTHERSHIP_SAVE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _no_violation(page, where: str) -> None:
    assert axe_violations(page) == [], where


def test_a_person_clicks_through_every_settings_page(login, make_user, stack):
    user = make_user("grace-settings", password="pw-123456")
    workspace = workspace_create(name="Analytics", owner=user)
    newcomer = make_user("linus-settings")
    newcomer.email = "linus@example.com"
    newcomer.save()
    login.allowed.append(r"status of (400|409) ")  # the refusals this test provokes (a bad e-mail, the last owner)
    context, page = login(user, viewport=VIEWPORTS["desktop"])
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)

    # Profile: a bad e-mail is refused beside its field, a good one saved.
    page.goto(stack.url + "/settings/")
    expect(page.locator("nav.tabs a[aria-current=page]")).to_have_text("Profile")
    page.fill("#id_first_name", "Grace")
    page.fill("#id_email", "not-an-address")
    page.click("#profile-form button[type=submit]")
    expect(page.locator("#id_email_error")).to_contain_text("valid email")
    page.fill("#id_email", "grace@example.com")
    page.click("#profile-form button[type=submit]")
    expect(page.locator(".toast")).to_have_text("Profile saved.")
    user.refresh_from_db()
    assert (user.first_name, user.email) == ("Grace", "grace@example.com")

    # Password: changed, and this browser stays signed in.
    page.click("nav.tabs >> text=Password")
    page.fill("#id_old_password", "pw-123456")
    page.fill("#id_new_password1", STRONG)
    page.fill("#id_new_password2", STRONG)
    page.click("#password-form button[type=submit]")
    expect(page.locator(".toast")).to_contain_text("Password changed.")
    page.goto(stack.url + "/")
    expect(page).to_have_url(stack.url + "/")

    # API tokens: made, its key shown once and copied, then revoked.
    page.goto(stack.url + "/settings/")
    page.click("nav.tabs >> text=API tokens")
    expect(page.locator("#token-none")).to_be_visible()
    page.fill("#id_name", "notebook")
    page.click("#token-form button[type=submit]")
    key = page.input_value("#token-key")
    assert key.startswith("msk_")
    page.click("#token-copy")
    expect(page.locator("#token-copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    expect(page.locator("#token-list")).to_contain_text("notebook")
    page.goto(stack.url + "/settings/tokens/")
    expect(page.locator("#token-key")).to_have_count(0)  # shown once
    page.click("#token-list button:has-text('Revoke')")
    expect(page.locator(".toast")).to_contain_text("Token revoked")
    assert not ApiToken.objects.filter(user=user).exists()

    # Appearance: dark, on every page.
    page.click("nav.tabs >> text=Appearance")
    page.check("input[name=theme][value=dark]")
    page.click("#appearance-form button[type=submit]")
    expect(page.locator(".toast")).to_have_text("Theme saved.")
    page.goto(stack.url + "/")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")

    # Default model: a new chat from the dashboard starts on it.
    page.goto(stack.url + "/settings/model/")
    page.select_option("#id_default_model", "local-terse")
    page.click("#model-form button[type=submit]")
    expect(page.locator(".toast")).to_contain_text("Default model saved")
    page.goto(stack.url + "/")
    page.fill("#new-chat-title", "On the terse model")
    page.click(".new-chat button[type=submit]")
    expect(page.locator("#chat-model")).to_have_value("local-terse")
    assert Chat.objects.get(title="On the terse model").model_id == "local-terse"

    # Workspaces → the workspace page: add by e-mail, promote, remove, set a budget.
    page.goto(stack.url + "/settings/")
    page.click("nav.tabs >> text=Workspaces")
    page.click("#workspace-list >> text=Analytics")
    expect(page).to_have_url(f"{stack.url}/workspaces/{workspace.pk}/")
    page.fill("#id_user", "linus@example.com")
    page.click("#member-add button[type=submit]")
    expect(page.locator(".toast")).to_have_text("linus-settings added as member.")
    row = page.locator(".member[data-user=linus-settings]")
    row.locator("select").select_option("owner")
    row.locator("button:has-text('Change role')").click()
    expect(page.locator(".toast")).to_have_text("linus-settings is now owner.")
    assert Membership.objects.get(user=newcomer).role == "owner"
    page.locator(".member[data-user=linus-settings] button:has-text('Remove')").click()
    expect(page.locator(".toast")).to_contain_text("linus-settings removed")
    expect(page.locator(".member[data-user=linus-settings]")).to_have_count(0)
    page.locator(".member[data-user=grace-settings] button:has-text('Remove')").click()
    expect(page.locator("#workspace-error")).to_have_text("A workspace needs an owner: make someone else an owner first.")
    page.click("#spend summary")
    page.fill("#budget-monthly", "25")
    page.click("#budget-save")
    expect(page.locator("#budget-status")).to_have_text("Saved.")
    expect(page.locator("#spend-month")).to_contain_text("of $25")


def test_choosing_dark_renders_data_theme_dark_on_another_page(login, make_user, stack):
    user = make_user("ada-theme", password="pw-123456")
    workspace_create(name="Theme", owner=user)
    _context, page = login(user)
    expect(page.locator("html")).to_have_attribute("data-theme", "system")
    page.goto(stack.url + "/settings/appearance/")
    page.check("input[name=theme][value=dark]")
    page.click("#appearance-form button[type=submit]")
    page.goto(stack.url + "/")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert UserPreferences.objects.get(user=user).theme == "dark"


@pytest.mark.screenshots
@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_settings_tab_and_the_workspace_page_have_no_accessibility_violation(login, make_user, stack, scheme, viewport):
    user = make_user(f"axe-{scheme}-{viewport}", password="pw-123456")
    workspace = workspace_create(name="Research", owner=user)
    membership_add(workspace=workspace, user=make_user(f"axe-member-{scheme}-{viewport}"))
    UserPreferences.objects.create(user=user, theme=scheme)  # the saved theme as the system's: both ways agree
    login.allowed.append(r"status of 400 ")  # the profile's bad e-mail, on purpose
    _context, page = login(user, viewport=VIEWPORTS[viewport])
    page.emulate_media(color_scheme=scheme)
    where = f"{scheme}, {viewport}"

    page.goto(stack.url + "/settings/")
    for tab in TABS:
        page.click(f"nav.tabs >> text={tab}")
        expect(page.locator("nav.tabs a[aria-current=page]")).to_have_text(tab)
        _no_violation(page, f"settings tab {tab}, {where}")

    # The states a form can be in: a new key shown, and errors beside their fields.
    page.click("nav.tabs >> text=API tokens")
    page.fill("#id_name", "axe")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-key")).to_be_visible()
    _no_violation(page, f"a new token, {where}")
    _shot(page, f"settings-tokens-{viewport}-{scheme}")
    page.click("nav.tabs >> text=Profile")
    page.fill("#id_email", "not-an-address")
    page.click("#profile-form button[type=submit]")
    expect(page.locator("#id_email_error")).to_be_visible()
    _no_violation(page, f"profile errors, {where}")

    page.goto(f"{stack.url}/workspaces/{workspace.pk}/")
    page.click("#spend summary")  # the budget form open
    _no_violation(page, f"workspace page, {where}")
    _shot(page, f"workspace-{viewport}-{scheme}")
    member = make_user(f"axe-reader-{scheme}-{viewport}", password="pw-123456")
    membership_add(workspace=workspace, user=member)
    _context, reader = login(member, viewport=VIEWPORTS[viewport])
    reader.emulate_media(color_scheme=scheme)
    reader.goto(f"{stack.url}/workspaces/{workspace.pk}/")
    expect(reader.locator(".member")).to_have_count(3)
    _no_violation(reader, f"workspace page read-only, {where}")
    assert re.search(r"Research", reader.title())
