import redis
from django.contrib import admin
from django.utils.html import format_html

from streams import eventlog
from streams.models import Stream


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    list_display = ["id", "chat", "status", "reason", "provider", "model", "created_at", "duration_seconds", "last_seq"]
    list_filter = ["status", "reason", "provider"]
    search_fields = ["id", "chat__title", "chat__id"]
    readonly_fields = [
        "id", "chat", "user_message", "assistant_message", "status", "reason", "last_seq", "provider", "model",
        "created_at", "started_at", "first_delta_at", "finished_at", "event_log_summary",
    ]

    @admin.display(description="Event log")
    def event_log_summary(self, obj: Stream) -> str:
        try:
            log = eventlog.read(obj.pk)
        except redis.RedisError as exc:
            return f"unavailable ({exc.__class__.__name__})"
        if not log:
            return "not retained"
        text = eventlog.snapshot_text(log)
        return format_html(
            "{} events, last seq {}, last type {}<br><pre style='white-space:pre-wrap'>{}</pre>",
            len(log), log[-1]["seq"], log[-1]["type"], text[:4000],
        )
