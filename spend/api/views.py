from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.selectors import workspace_get, workspace_is_owner
from spend.selectors import budget_status
from spend.services import budget_update

MAX_BUDGET_USD = 10_000_000
OWNERS_ONLY = "Only an owner of this workspace may set its budget."


@extend_schema_field({"type": "number", "minimum": 0, "maximum": MAX_BUDGET_USD, "nullable": True})
class UsdField(serializers.Field):
    """A JSON number of dollars (rounded to 1/100 of a cent) or null for no budget; never a string."""

    default_error_messages = {
        "invalid": "Must be a number of US dollars, or null for no budget.",
        "range": f"Must be between 0 and {MAX_BUDGET_USD:,} US dollars.",
    }

    def __init__(self, **kwargs):
        super().__init__(allow_null=True, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)) or not math.isfinite(data):
            self.fail("invalid")
        if not 0 <= data <= MAX_BUDGET_USD:
            self.fail("range")
        return Decimal(str(data)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)

    def to_representation(self, value):
        return None if value is None else float(value)


_BudgetOutput = inline_serializer(
    "BudgetOutput",
    {
        "workspace_id": serializers.UUIDField(),
        "monthly_usd": serializers.FloatField(allow_null=True),
        "member_daily_usd": serializers.FloatField(allow_null=True),
        "spent_month_usd": serializers.FloatField(help_text="The workspace this calendar month (UTC), turns and warms."),
        "spent_today_usd": serializers.FloatField(help_text="The asking member's turns today (UTC)."),
        "workspace_spent_today_usd": serializers.FloatField(help_text="Every member's turns and every warm today."),
        "workspace_spent_7d_usd": serializers.FloatField(help_text="The same over the last 7 days, today included."),
        "notices": serializers.ListField(
            child=serializers.DictField(), help_text='What the dashboard warns of: `{"level": "warning"|"exceeded", "text"}`.'
        ),
    },
)


def _budget_output(*, workspace_id, user) -> dict:
    status = budget_status(workspace_id=workspace_id, user_id=user.pk)
    return {
        "workspace_id": str(workspace_id),
        "monthly_usd": status.monthly_usd,
        "member_daily_usd": status.member_daily_usd,
        "spent_month_usd": status.spent_month_usd,
        "spent_today_usd": status.spent_today_usd,
        "workspace_spent_today_usd": status.workspace_spent_today_usd,
        "workspace_spent_7d_usd": status.workspace_spent_7d_usd,
        "notices": status.notices,
    }


class WorkspaceBudgetApi(APIView):
    """A workspace's budgets and its spend. ``GET`` for members; ``PUT`` for owners (a field left
    out keeps its value; null clears that budget)."""

    class Input(serializers.Serializer):
        monthly_usd = UsdField(required=False)
        member_daily_usd = UsdField(required=False)

        def validate(self, attrs):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field; use monthly_usd and/or member_daily_usd."] for name in unknown}
                )
            if not attrs:
                raise serializers.ValidationError("Give monthly_usd and/or member_daily_usd (a number, or null).")
            return attrs

    @extend_schema(responses=_BudgetOutput)
    def get(self, request, workspace_id):
        workspace = workspace_get(user=request.user, workspace_id=workspace_id)
        return Response(_budget_output(workspace_id=workspace.pk, user=request.user))

    @extend_schema(request=Input, responses=_BudgetOutput)
    def put(self, request, workspace_id):
        workspace = workspace_get(user=request.user, workspace_id=workspace_id)
        if not workspace_is_owner(user=request.user, workspace_id=workspace.pk):
            raise PermissionDenied(OWNERS_ONLY)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        budget_update(workspace_id=workspace.pk, user=request.user, **payload.validated_data)
        return Response(_budget_output(workspace_id=workspace.pk, user=request.user))
