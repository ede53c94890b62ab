"""``/api/mothership/workspaces/<id>/members``: members read the list, owners add people (by
username or e-mail), change roles and take people out; non-members get 404, other members 403,
bad input 400, and no change may leave a workspace without an owner (409)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chats.models import Membership
from chats.services import LAST_OWNER, MembershipRefused, membership_remove, membership_set_role
from tests import factories

pytestmark = pytest.mark.django_db


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _url(workspace, user_id=None) -> str:
    base = f"/api/mothership/workspaces/{workspace.pk}/members"
    return base if user_id is None else f"{base}/{user_id}"


@pytest.fixture
def bob(workspace, make_user):
    user = make_user("bob")
    factories.MembershipFactory(user=user, workspace=workspace, role=Membership.Role.MEMBER)
    return user


def test_every_member_reads_the_members_owners_first(api, workspace, user, bob):
    user.first_name, user.last_name = "Alice", "Liddell"
    user.save()
    for client in (api, _client(bob)):
        answer = client.get(_url(workspace))
        assert answer.status_code == 200
        rows = [(row["username"], row["role"], row["name"]) for row in answer.json()]
        assert rows == [("alice", "owner", "Alice Liddell"), ("bob", "member", "")]
        assert "email" not in answer.json()[0]  # members see who, not how to reach them


def test_non_members_get_404_for_every_operation(workspace, bob, make_user):
    stranger = _client(make_user("dave"))
    assert stranger.get(_url(workspace)).status_code == 404
    assert stranger.post(_url(workspace), {"user": "dave"}, format="json").status_code == 404
    assert stranger.patch(_url(workspace, bob.pk), {"role": "owner"}, format="json").status_code == 404
    assert stranger.delete(_url(workspace, bob.pk)).status_code == 404
    assert stranger.get("/api/mothership/workspaces/not-a-uuid/members").status_code == 404
    assert Membership.objects.get(user=bob).role == "member"


def test_other_members_get_403_with_a_sentence(workspace, user, bob, make_user):
    make_user("carol")
    as_bob = _client(bob)
    for answer in (
        as_bob.post(_url(workspace), {"user": "carol"}, format="json"),
        as_bob.patch(_url(workspace, user.pk), {"role": "member"}, format="json"),
        as_bob.delete(_url(workspace, user.pk)),
    ):
        assert answer.status_code == 403
        assert answer.json()["detail"] == "Only an owner of this workspace may change its members."
    assert Membership.objects.filter(workspace=workspace).count() == 2


def test_an_owner_adds_people_by_username_or_by_e_mail(api, workspace, make_user):
    carol = make_user("carol")
    erin = make_user("erin")
    erin.email = "Erin@Example.com"
    erin.save()

    by_name = api.post(_url(workspace), {"user": "carol"}, format="json")
    by_email = api.post(_url(workspace), {"user": "  erin@example.COM ", "role": "owner"}, format="json")

    assert by_name.status_code == 201 and by_name.json()["username"] == "carol" and by_name.json()["role"] == "member"
    assert by_email.status_code == 201 and (by_email.json()["user_id"], by_email.json()["role"]) == (erin.pk, "owner")
    assert set(Membership.objects.filter(workspace=workspace).values_list("user__username", "role")) == {
        ("alice", "owner"),
        ("carol", "member"),
        ("erin", "owner"),
    }
    assert carol.workspaces.filter(pk=workspace.pk).exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"user": "nobody-here"}, "user"),
        ({"user": "nobody@example.com"}, "user"),
        ({"user": ""}, "user"),
        ({}, "user"),
        ({"user": 42}, "user"),
        ({"user": "carol", "role": "admin"}, "role"),
        ({"user": "carol", "rol": "owner"}, "rol"),
    ],
)
def test_bad_input_to_add_is_a_400_naming_the_field(api, workspace, make_user, body, field):
    make_user("carol")
    answer = api.post(_url(workspace), body, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()["errors"] and answer.json()["detail"]
    assert Membership.objects.filter(workspace=workspace).count() == 1


def test_an_e_mail_two_people_share_is_refused_with_the_way_out(api, workspace, make_user):
    for name in ("twin-a", "twin-b"):
        twin = make_user(name)
        twin.email = "twins@example.com"
        twin.save()
    answer = api.post(_url(workspace), {"user": "twins@example.com"}, format="json")
    assert answer.status_code == 400
    assert answer.json()["errors"]["user"] == ["More than one person has that e-mail; give their username instead."]


def test_adding_a_member_again_is_a_409_and_changes_nothing(api, workspace, bob):
    answer = api.post(_url(workspace), {"user": "bob", "role": "owner"}, format="json")
    assert answer.status_code == 409 and answer.json()["detail"] == "bob is already a member of this workspace."
    assert Membership.objects.get(user=bob).role == "member"


def test_an_owner_changes_a_role_and_removes_a_member(api, workspace, bob, django_capture_on_commit_callbacks):
    promoted = api.patch(_url(workspace, bob.pk), {"role": "owner"}, format="json")
    assert promoted.status_code == 200 and promoted.json()["role"] == "owner"
    assert Membership.objects.get(user=bob).role == "owner"

    with django_capture_on_commit_callbacks(execute=True):
        removed = api.delete(_url(workspace, bob.pk))
    assert removed.status_code == 204
    assert not Membership.objects.filter(user=bob).exists()
    assert _client(bob).get(_url(workspace)).status_code == 404  # access withdrawn at once


def test_the_last_owner_can_neither_step_down_nor_leave(api, workspace, user, bob):
    for answer in (
        api.patch(_url(workspace, user.pk), {"role": "member"}, format="json"),
        api.delete(_url(workspace, user.pk)),
    ):
        assert answer.status_code == 409
        assert answer.json()["detail"] == LAST_OWNER
    assert Membership.objects.get(user=user).role == "owner"

    # With a second owner, the first may step down (and the workspace still has one).
    assert api.patch(_url(workspace, bob.pk), {"role": "owner"}, format="json").status_code == 200
    assert api.patch(_url(workspace, user.pk), {"role": "member"}, format="json").status_code == 200
    assert _client(bob).delete(_url(workspace, user.pk)).status_code == 204
    assert list(Membership.objects.filter(workspace=workspace).values_list("user__username", "role")) == [("bob", "owner")]


@pytest.mark.parametrize("body", [{}, {"role": "boss"}, {"role": None}, {"role": "owner", "name": "x"}])
def test_bad_input_to_a_role_change_is_a_400(api, workspace, bob, body):
    answer = api.patch(_url(workspace, bob.pk), body, format="json")
    assert answer.status_code == 400 and answer.json()["detail"]
    assert Membership.objects.get(user=bob).role == "member"


def test_someone_who_is_no_member_is_a_404_to_change_or_remove(api, workspace, make_user):
    outsider = make_user("dave")
    factories.MembershipFactory(user=outsider)  # a member elsewhere
    for path in (_url(workspace, outsider.pk), _url(workspace, 999999), _url(workspace, "bob")):
        assert api.patch(path, {"role": "owner"}, format="json").status_code == 404
        assert api.delete(path).status_code == 404


def test_the_services_guard_the_last_owner_whatever_calls_them(workspace, user):
    owner = Membership.objects.get(user=user, workspace=workspace)
    with pytest.raises(MembershipRefused, match="needs an owner"):
        membership_set_role(membership=owner, role="member")
    with pytest.raises(MembershipRefused, match="needs an owner"):
        membership_remove(membership=owner)
    with pytest.raises(ValueError, match="No role 'admin'"):
        membership_set_role(membership=owner, role="admin")
    assert Membership.objects.get(pk=owner.pk).role == "owner"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_owners_stepping_down_at_once_leave_one_owner(workspace, user, bob):
    """A role change waits for another one in flight on the same workspace (its row locked), then
    counts the owners that change left: without the lock both would see the other still an owner."""
    import threading

    from django.db import connection, transaction

    from chats.models import Workspace

    Membership.objects.filter(user=bob).update(role="owner")
    holding, release = threading.Event(), threading.Event()
    outcome: list = []

    def alice_steps_down():  # as membership_set_role does: lock, (count), then write
        try:
            with transaction.atomic():
                Workspace.objects.select_for_update().get(pk=workspace.pk)
                holding.set()
                release.wait(30)
                Membership.objects.filter(user=user, workspace=workspace).update(role="member")
        finally:
            connection.close()

    def bob_steps_down():
        try:
            membership_set_role(membership=Membership.objects.get(user=bob, workspace=workspace), role="member")
            outcome.append("demoted")
        except MembershipRefused as exc:
            outcome.append(str(exc))
        finally:
            connection.close()

    first = threading.Thread(target=alice_steps_down)
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=bob_steps_down)
    second.start()
    second.join(1)
    waited = second.is_alive()
    release.set()
    first.join(10)
    second.join(10)

    assert waited, "the second role change did not wait for the first"
    assert outcome == [LAST_OWNER]
    assert list(Membership.objects.filter(workspace=workspace, role="owner").values_list("user__username", flat=True)) == ["bob"]
