from django.contrib import admin

from warming.models import WarmingSchedule


@admin.register(WarmingSchedule)
class WarmingScheduleAdmin(admin.ModelAdmin):
    list_display = ["chat", "enabled", "interval_seconds", "next_warm_at", "last_warm_at", "last_cache_pct", "stop_reason"]
    list_filter = ["enabled", "stop_reason"]
    search_fields = ["chat__title", "chat__id"]
    readonly_fields = ["next_warm_at", "last_warm_at", "last_cache_pct", "warm_count", "hit_count", "miss_count", "last_error"]
