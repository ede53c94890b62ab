"""Admin for budgets (set through the same service as the API's PUT) and the ledger (read only)."""

from __future__ import annotations

from django.contrib import admin

from spend.models import Budget, Charge, MemberDaySpend, WorkspaceMonthSpend, usd
from spend.services import budget_clear, budget_set


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["workspace", "monthly_usd", "member_daily_usd", "updated_at", "updated_by"]
    search_fields = ["workspace__name"]
    fields = ["workspace", "monthly_usd", "member_daily_usd", "updated_at", "updated_by"]
    readonly_fields = ["updated_at", "updated_by"]
    autocomplete_fields = ["workspace"]

    def save_model(self, request, obj, form, change):
        # The service: turns already streaming are held to the new budget too (Redis's copy).
        budget_set(
            workspace_id=obj.workspace_id, monthly_usd=obj.monthly_usd, member_daily_usd=obj.member_daily_usd, user=request.user
        )

    def delete_model(self, request, obj):
        budget_clear(workspace_id=obj.workspace_id)

    def delete_queryset(self, request, queryset):
        for workspace_id in list(queryset.values_list("workspace_id", flat=True)):
            budget_clear(workspace_id=workspace_id)


class _ReadOnly(admin.ModelAdmin):
    """The ledger is written by turns and warms only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Charge)
class ChargeAdmin(_ReadOnly):
    list_display = ["id", "kind", "workspace", "user", "chat", "model", "cost", "estimated", "at"]
    list_filter = ["kind", "estimated", "model", "workspace"]
    search_fields = ["id", "user__username", "workspace__name"]
    date_hierarchy = "at"
    list_select_related = ["workspace", "user", "chat"]

    @admin.display(description="USD", ordering="cost_nanousd")
    def cost(self, obj: Charge) -> str:
        return f"{obj.cost_usd:.6f}"


@admin.register(WorkspaceMonthSpend)
class WorkspaceMonthSpendAdmin(_ReadOnly):
    list_display = ["workspace", "month", "cost"]
    list_filter = ["month"]
    list_select_related = ["workspace"]

    @admin.display(description="USD", ordering="cost_nanousd")
    def cost(self, obj) -> str:
        return f"{usd(obj.cost_nanousd):.6f}"


@admin.register(MemberDaySpend)
class MemberDaySpendAdmin(_ReadOnly):
    list_display = ["workspace", "user", "day", "cost"]
    list_filter = ["day"]
    list_select_related = ["workspace", "user"]

    @admin.display(description="USD", ordering="cost_nanousd")
    def cost(self, obj) -> str:
        return f"{usd(obj.cost_nanousd):.6f}"
