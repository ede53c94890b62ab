"""Admin for streams: tokens, timings, the event log's summary; stop and sweep through the services."""

from __future__ import annotations

import redis
from django.contrib import admin
from django.utils.html import format_html

from mothership.infra.admin import report, tally
from streams import eventlog
from streams.models import Stream
from streams.services import stream_cancel, streams_sweep


class StreamInline(admin.TabularInline):
    model = Stream
    fk_name = "chat"
    extra = 0
    can_delete = False
    fields = ["id", "status", "reason", "provider", "model", "created_at", "finished_at", "last_seq"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "chat",
        "status",
        "reason",
        "model_id",
        "provider",
        "model",
        "started_at",
        "duration_seconds",
        "last_seq",
        "tokens",
    ]
    list_filter = ["status", "reason", "provider", "model_id"]
    search_fields = ["id", "chat__title", "chat__id"]
    list_select_related = ["chat", "assistant_message"]
    readonly_fields = [
        "id",
        "chat",
        "user_message",
        "assistant_message",
        "status",
        "reason",
        "last_seq",
        "model_id",
        "provider",
        "model",
        "started_by",
        "created_at",
        "started_at",
        "first_delta_at",
        "finished_at",
        "cancel_requested_at",
        "cancel_noticed_at",
        "event_log_summary",
    ]
    actions = ["cancel_streams", "sweep_streams"]

    @admin.display(description="tokens (in / cache read / cache write / out)")
    def tokens(self, obj: Stream) -> str:
        m = obj.assistant_message
        if m is None:
            return "-"
        return f"{m.input_tokens} / {m.cache_read_tokens} / {m.cache_write_tokens} / {m.output_tokens}"

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
            len(log),
            log[-1]["seq"],
            log[-1]["type"],
            text[:4000],
        )

    @admin.action(description="Cancel the selected live streams (owner-aware, keeps their text)", permissions=["change"])
    def cancel_streams(self, request, queryset):
        counts: dict[str, int] = {}
        for stream in queryset.select_related("chat"):
            outcome = stream_cancel(chat=stream.chat, stream_id=stream.pk, reason="user")
            tally(counts, "cancelled" if outcome.cancelled else outcome.reason.replace("_", " "))
            if outcome.cancelled:
                self.log_change(request, stream, f"Cancelled (settled: {outcome.settled}).")
        report(self, request, counts, "Cancel")

    @admin.action(description="Run the sweeper on the selected streams", permissions=["change"])
    def sweep_streams(self, request, queryset):
        result = streams_sweep(stream_ids=list(queryset.values_list("pk", flat=True)))
        for stream in queryset.filter(pk__in=result["interrupted"]):
            self.log_change(request, stream, "Interrupted by the sweeper (its lock was gone); text salvaged from the log.")
        report(
            self,
            request,
            {
                "still alive": result["alive"],
                "interrupted": len(result["interrupted"]),
                "already finished": result["already_finalized"],
                "left for now (Redis restarted less than a lock TTL ago)": result["waiting"],
            },
            "Sweep",
        )
