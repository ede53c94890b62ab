"""``/workspaces/<id>/``: members see the members and budgets read-only, non-members get 404;
owners add, change and remove members through plain forms (the members API's services), and set
the budgets with the dashboard's own form. A removed member's sockets lose the workspace at once."""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chats.models import Membership
from chats.services import LAST_OWNER
from tests import factories
from tests.mothership.test_access import _dropped, _subscribed

pytestmark = pytest.mark.django_db


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _text(answer) -> str:
    return answer.content.decode().replace("&#x27;", "'")


def _page(workspace) -> str:
    return f"/workspaces/{workspace.pk}/"


@pytest.fixture
def bob(workspace, make_user):
    user = make_user("bob")
    factories.MembershipFactory(user=user, workspace=workspace, role=Membership.Role.MEMBER)
    return user


def test_an_owner_sees_the_members_the_forms_and_the_budget_form(browser_client, workspace, bob):
    page = _text(browser_client.get(_page(workspace)))
    assert re.findall(r'data-user="([^"]+)"', page) == ["alice", "bob"]
    assert 'id="member-add"' in page and page.count('class="member-role"') == 2
    assert 'id="spend"' in page and 'id="budget-form"' in page  # the dashboard's panel, included
    assert "mothership/workspace.js" in page and "mothership/settings.css" in page


def test_a_member_sees_it_read_only(workspace, bob):
    page = _text(_browser(bob).get(_page(workspace)))
    assert re.findall(r'data-user="([^"]+)"', page) == ["alice", "bob"]
    assert 'id="member-add"' not in page and 'class="member-role"' not in page and "Remove" not in page
    assert 'id="spend"' in page and 'id="budget-form"' not in page


def test_non_members_and_strangers_get_404(client, workspace, bob, make_user):
    stranger = _browser(make_user("dave"))
    assert stranger.get(_page(workspace)).status_code == 404
    assert stranger.get("/workspaces/not-a-uuid/").status_code == 404
    for path in ("members/add", f"members/{bob.pk}/role", f"members/{bob.pk}/remove"):
        assert stranger.post(_page(workspace) + path, {"user": "dave", "role": "owner"}).status_code == 404, path
    assert client.get(_page(workspace)).status_code == 302  # signed out: to the sign-in page
    assert Membership.objects.get(user=bob).role == "member"


def test_a_member_who_is_no_owner_gets_403_for_each_write(workspace, user, bob, make_user):
    make_user("carol")
    as_bob = _browser(bob)
    assert as_bob.post(_page(workspace) + "members/add", {"user": "carol", "role": "member"}).status_code == 403
    assert as_bob.post(_page(workspace) + f"members/{user.pk}/role", {"role": "member"}).status_code == 403
    assert as_bob.post(_page(workspace) + f"members/{user.pk}/remove").status_code == 403
    assert set(Membership.objects.values_list("user__username", "role")) == {("alice", "owner"), ("bob", "member")}


def test_an_owner_adds_by_e_mail_promotes_and_removes(browser_client, workspace, make_user):
    carol = make_user("carol")
    carol.email = "carol@example.com"
    carol.save()

    added = browser_client.post(_page(workspace) + "members/add", {"user": "CAROL@example.com", "role": "member"})
    assert added.status_code == 302 and added["Location"] == _page(workspace)
    assert "carol added as member." in _text(browser_client.get(_page(workspace)))

    assert browser_client.post(_page(workspace) + f"members/{carol.pk}/role", {"role": "owner"}).status_code == 302
    assert Membership.objects.get(user=carol).role == "owner"
    assert browser_client.post(_page(workspace) + f"members/{carol.pk}/remove").status_code == 302
    assert not Membership.objects.filter(user=carol).exists()
    assert _browser(carol).get(_page(workspace)).status_code == 404


@pytest.mark.parametrize(
    "form, status, why",
    [
        ({"user": "nobody", "role": "member"}, 400, "No one here has that username or e-mail."),
        ({"user": "", "role": "member"}, 400, "This field is required."),
        ({"user": "bob", "role": "admin"}, 400, "Select a valid choice."),
        ({"user": "bob", "role": "member"}, 409, "bob is already a member of this workspace."),
    ],
)
def test_a_refused_add_says_why_beside_the_field(browser_client, workspace, bob, form, status, why):
    answer = browser_client.post(_page(workspace) + "members/add", form)
    assert answer.status_code == status
    assert why in _text(answer)
    assert Membership.objects.filter(workspace=workspace).count() == 2


def test_the_last_owner_is_kept_with_a_clear_message(browser_client, workspace, user, bob):
    for path, form in ((f"members/{user.pk}/role", {"role": "member"}), (f"members/{user.pk}/remove", {})):
        answer = browser_client.post(_page(workspace) + path, form)
        assert answer.status_code == 409
        assert f'<p class="form-errors" role="alert" id="workspace-error">{LAST_OWNER}</p>' in _text(answer)
    assert Membership.objects.get(user=user).role == "owner"


def test_a_bad_role_or_an_unknown_member_is_refused(browser_client, workspace, bob, make_user):
    assert browser_client.post(_page(workspace) + f"members/{bob.pk}/role", {"role": "boss"}).status_code == 400
    outsider = make_user("dave")
    assert browser_client.post(_page(workspace) + f"members/{outsider.pk}/role", {"role": "owner"}).status_code == 404
    assert browser_client.post(_page(workspace) + "members/999999/remove").status_code == 404
    assert Membership.objects.get(user=bob).role == "member"


def test_an_owner_who_leaves_goes_to_the_dashboard(browser_client, workspace, user, bob):
    Membership.objects.filter(user=bob).update(role="owner")
    answer = browser_client.post(_page(workspace) + f"members/{user.pk}/remove")
    assert answer.status_code == 302 and answer["Location"] == "/"
    assert not Membership.objects.filter(user=user, workspace=workspace).exists()


def test_the_page_forms_need_the_csrf_token(workspace, user, bob):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.post(_page(workspace) + f"members/{bob.pk}/remove").status_code == 403
    assert Membership.objects.filter(user=bob).exists()


@pytest.mark.django_db(transaction=True)
async def test_removing_a_member_from_the_page_closes_their_sockets_hold_at_once(workspace, user, bob, chat):
    """The existing path (membership deleted → access changed), reached from the page's form."""
    communicator = await _subscribed(bob, chat)
    owner = await database_sync_to_async(_browser)(user)
    answer = await database_sync_to_async(owner.post)(_page(workspace) + f"members/{bob.pk}/remove")
    assert answer.status_code == 302
    await _dropped(communicator, chat)
