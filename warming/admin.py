"""Admin for warming schedules; its actions are also used by the chats' admin (``mothership.admin``)."""

from __future__ import annotations

from django.contrib import admin

from mothership.infra.admin import report, tally
from warming.dispatch import warming_warm_now
from warming.models import WarmingSchedule
from warming.services import warming_get, warming_update


def set_warming(modeladmin, request, rows, *, enabled: bool) -> None:
    """rows: (object to log, chat). The same service as the API's PUT /warming."""
    counts: dict[str, int] = {}
    for logged, chat in rows:
        was_on = warming_get(chat=chat).enabled
        warming_update(chat=chat, enabled=enabled)
        tally(counts, ("already on" if was_on else "enabled") if enabled else ("disabled" if was_on else "already off"))
        if was_on != enabled:
            modeladmin.log_change(request, logged, "Enabled cache warming." if enabled else "Disabled cache warming.")
    report(modeladmin, request, counts, "Warming")


def warm_now(modeladmin, request, rows) -> None:
    """rows: (object to log, chat id). One warm each, in this process (as manage.py warm_now)."""
    counts: dict[str, int] = {}
    for logged, chat_id in rows:
        result = warming_warm_now(chat_id=chat_id, inline=True)
        tally(counts, result.outcome.replace("_", " "))
        modeladmin.log_change(request, logged, f"Warm now: {result.outcome}.")
    report(modeladmin, request, counts, "Warm now")


@admin.register(WarmingSchedule)
class WarmingScheduleAdmin(admin.ModelAdmin):
    list_display = [
        "chat",
        "enabled",
        "interval_seconds",
        "next_warm_at",
        "last_warm_at",
        "last_cache_pct",
        "retention",
        "cost",
        "stop_reason",
    ]
    list_filter = ["enabled", "stop_reason"]
    search_fields = ["chat__title", "chat__id"]
    list_select_related = ["chat"]
    readonly_fields = [
        "next_warm_at",
        "last_warm_at",
        "last_cache_pct",
        "warm_count",
        "hit_count",
        "miss_count",
        "consecutive_failures",
        "consecutive_misses",
        "last_error",
        "last_warm_cost",
        "idle_warm_cost",
        "prefix_tokens",
        "last_turn_at",
        "enabled_at",
        "claim_token",
        "claimed_at",
    ]
    actions = ["enable", "disable", "warm_now"]

    @admin.display(description="retention")
    def retention(self, obj: WarmingSchedule) -> str:
        return "-" if obj.cache_retention is None else f"{obj.cache_retention * 100:.0f}%"

    @admin.display(description="cost (last warm / per hour, USD)")
    def cost(self, obj: WarmingSchedule) -> str:
        if obj.last_warm_cost is None:
            return "-"
        return f"{obj.last_warm_cost:.6f} / {obj.last_warm_cost * 3600 / obj.interval_seconds:.4f}"

    @admin.action(description="Enable warming", permissions=["change"])
    def enable(self, request, queryset):
        set_warming(self, request, [(s, s.chat) for s in queryset.select_related("chat")], enabled=True)

    @admin.action(description="Disable warming", permissions=["change"])
    def disable(self, request, queryset):
        set_warming(self, request, [(s, s.chat) for s in queryset.select_related("chat")], enabled=False)

    @admin.action(description="Warm now", permissions=["change"])
    def warm_now(self, request, queryset):
        warm_now(self, request, [(s, s.chat_id) for s in queryset])
