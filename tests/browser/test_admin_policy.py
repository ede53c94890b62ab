"""The admin under the Content-Security-Policy: a staff member signs in, opens a list and a
change form and searches, and the policy refuses nothing (the login fixture fails on any
violation or console error)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chats.services import chat_create, workspace_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_the_admin_works_under_the_policy(login, make_user, stack):
    admin = make_user("root-admin")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    chat = chat_create(workspace=workspace_create(name="Ops", owner=admin), title="Audited chat", created_by=admin)
    context, page = login(admin)
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)

    page.goto(f"{stack.url}/admin/")
    expect(page.locator("#site-name")).to_be_visible()
    page.goto(f"{stack.url}/admin/chats/chat/?q=Audited")
    expect(page.locator("#result_list")).to_contain_text("Audited chat")
    page.goto(f"{stack.url}/admin/chats/chat/{chat.pk}/change/")
    expect(page.locator("#content h1")).to_be_visible()
    assert missing == []
