"""``/workspaces/<id>/``: a workspace's members and budgets. Members see them (404 for anyone
else); owners add people, change roles, take people out and set the budgets (403 for other
members). Each write is a plain form that calls the same service as the members API."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from chats import selectors as chat_selectors
from chats import services as chat_services
from mothership.forms import MemberAddForm, MemberRoleForm
from spend.selectors import budget_status


def _page(request, workspace, *, add_form=None, error: str = "", status: int = 200):
    is_owner = chat_selectors.workspace_is_owner(user=request.user, workspace_id=workspace.pk)
    context = {
        "workspace": workspace,
        "members": chat_selectors.workspace_members(workspace=workspace),
        "is_owner": is_owner,
        "add_form": add_form or MemberAddForm(),
        "roles": MemberRoleForm.base_fields["role"].choices,
        "error": error,
        # The dashboard's spend panel and its "Set budgets" form (templates/mothership/_spend.html).
        "spend": budget_status(workspace_id=workspace.pk, user_id=request.user.pk),
        "can_set_budget": is_owner,
    }
    return render(request, "mothership/workspace.html", context, status=status)


@login_required
@require_GET
def workspace_page(request, workspace_id):
    return _page(request, chat_selectors.workspace_get(user=request.user, workspace_id=workspace_id))


@login_required
@require_POST
def member_add(request, workspace_id):
    workspace = chat_selectors.workspace_get_for_owner(user=request.user, workspace_id=workspace_id)
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        return _page(request, workspace, add_form=form, status=400)
    try:
        user = chat_selectors.user_find(identifier=form.cleaned_data["user"])
    except chat_selectors.UserNotFound as exc:
        form.add_error("user", str(exc))
        return _page(request, workspace, add_form=form, status=400)
    try:
        chat_services.member_invite(workspace=workspace, user=user, role=form.cleaned_data["role"])
    except chat_services.MembershipRefused as exc:
        form.add_error("user", str(exc))
        return _page(request, workspace, add_form=form, status=409)
    messages.success(request, f"{user.username} added as {form.cleaned_data['role']}.")
    return redirect("workspace", workspace_id=workspace.pk)


@login_required
@require_POST
def member_role(request, workspace_id, user_id):
    workspace = chat_selectors.workspace_get_for_owner(user=request.user, workspace_id=workspace_id)
    membership = chat_selectors.member_get(workspace=workspace, user_id=user_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        return _page(request, workspace, error="Choose owner or member.", status=400)
    try:
        chat_services.membership_set_role(membership=membership, role=form.cleaned_data["role"])
    except chat_services.MembershipRefused as exc:
        return _page(request, workspace, error=str(exc), status=409)
    messages.success(request, f"{membership.user.username} is now {membership.role}.")
    return redirect("workspace", workspace_id=workspace.pk)


@login_required
@require_POST
def member_remove(request, workspace_id, user_id):
    workspace = chat_selectors.workspace_get_for_owner(user=request.user, workspace_id=workspace_id)
    membership = chat_selectors.member_get(workspace=workspace, user_id=user_id)
    try:
        chat_services.membership_remove(membership=membership)
    except chat_services.MembershipRefused as exc:
        return _page(request, workspace, error=str(exc), status=409)
    if membership.user_id == request.user.pk:
        messages.success(request, f"You left {workspace.name}.")
        return redirect("home")
    messages.success(request, f"{membership.user.username} removed: their access ended at once.")
    return redirect("workspace", workspace_id=workspace.pk)
