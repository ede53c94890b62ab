from django.contrib import admin

from chats.admin import set_warming, warm_now
from warming.models import WarmingSchedule


@admin.register(WarmingSchedule)
class WarmingScheduleAdmin(admin.ModelAdmin):
    list_display = ["chat", "enabled", "interval_seconds", "next_warm_at", "last_warm_at", "last_cache_pct", "retention", "cost", "stop_reason"]
    list_filter = ["enabled", "stop_reason"]
    search_fields = ["chat__title", "chat__id"]
    list_select_related = ["chat"]
    readonly_fields = [
        "next_warm_at", "last_warm_at", "last_cache_pct", "warm_count", "hit_count", "miss_count", "consecutive_failures",
        "consecutive_misses", "last_error", "last_warm_cost", "idle_warm_cost", "prefix_tokens", "last_turn_at", "enabled_at",
        "claim_token", "claimed_at",
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

    @admin.action(description="Enable warming")
    def enable(self, request, queryset):
        set_warming(self, request, [(s, s.chat) for s in queryset.select_related("chat")], enabled=True)

    @admin.action(description="Disable warming")
    def disable(self, request, queryset):
        set_warming(self, request, [(s, s.chat) for s in queryset.select_related("chat")], enabled=False)

    @admin.action(description="Warm now")
    def warm_now(self, request, queryset):
        warm_now(self, request, [(s, s.chat_id) for s in queryset])
