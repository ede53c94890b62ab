"""Admin for chats: the list shows state and liveness as reconciled (one MGET per page, the API's
own selector), and every action calls the same services as the API."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q

from chats.admin import MessageInline
from chats.models import Chat
from mothership import selectors
from mothership.infra.admin import report, tally
from mothership.models import ApiToken
from mothership.services import RestoreExpired, chat_close, chat_restore, chat_trash, trash_purge
from streams.admin import StreamInline
from streams.models import Stream
from streams.services import streams_cancel_chat, streams_sweep
from warming.admin import set_warming, warm_now


class ReconciledChangeList(ChangeList):
    """Attaches each row's reconciled view: one MGET for the page, no repair writes."""

    def get_results(self, request):
        super().get_results(request)
        views = selectors.reconciled_views(list(self.result_list))
        for chat, view in zip(self.result_list, views):
            chat.view = view


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [(s, s) for s in ("streaming", "idle", "cancelled", "interrupted", "failed")]

    def queryset(self, request, queryset):
        # Filters on what the database says; the column shows what Redis confirms.
        value = self.value()
        if value == "streaming":
            return queryset.filter(active_stream_id__isnull=False)
        if value == "idle":
            return queryset.filter(active_stream_id__isnull=True).filter(
                Q(last_stream_status__isnull=True) | Q(last_stream_status="completed")
            )
        if value in ("cancelled", "interrupted", "failed"):
            return queryset.filter(active_stream_id__isnull=True, last_stream_status=value)
        return queryset


class WarmingFilter(admin.SimpleListFilter):
    title = "warming"
    parameter_name = "warming"

    def lookups(self, request, model_admin):
        return [("on", "on"), ("off", "off")]

    def queryset(self, request, queryset):
        if self.value() == "on":
            return queryset.filter(warming__enabled=True)
        if self.value() == "off":
            return queryset.exclude(warming__enabled=True)
        return queryset


class TrashFilter(admin.SimpleListFilter):
    title = "in trash"
    parameter_name = "trash"

    def lookups(self, request, model_admin):
        return [("yes", "in trash"), ("no", "not in trash")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = ["title", "workspace", "state", "liveness", "active_stream", "warming_badge", "updated_at", "deleted_at"]
    list_filter = [StateFilter, TrashFilter, "workspace", WarmingFilter, ("closed_at", admin.EmptyFieldListFilter)]
    search_fields = ["title", "id"]
    readonly_fields = ["id", "active_stream_id", "closed_at", "deleted_at", "created_at", "updated_at"]
    inlines = [MessageInline, StreamInline]
    actions = [
        "cancel_running_turns",
        "close_chats",
        "enable_warming",
        "disable_warming",
        "warm_now",
        "sweep",
        "trash",
        "restore",
        "purge",
    ]

    def get_queryset(self, request):
        return selectors.annotated_chats(super().get_queryset(request)).select_related("workspace")

    def get_changelist(self, request, **kwargs):
        return ReconciledChangeList

    def _view(self, obj):
        return getattr(obj, "view", None) or selectors.reconciled_views([obj])[0]

    @admin.display(description="state")
    def state(self, obj):
        return self._view(obj).state

    @admin.display(description="liveness")
    def liveness(self, obj):
        return self._view(obj).liveness

    @admin.display(description="active stream")
    def active_stream(self, obj):
        return self._view(obj).active_stream_id or "-"

    @admin.display(description="warming")
    def warming_badge(self, obj):
        warming = self._view(obj).warming
        if not warming or not warming["enabled"]:
            return f"off ({warming['stopReason']})" if warming and warming["stopReason"] else "off"
        schedule_next = getattr(obj, "warming_next_at", None)
        return f"on, next {schedule_next:%H:%M:%S}" if schedule_next else "on"

    @admin.action(description="Cancel the running turn of the selected chats", permissions=["change"])
    def cancel_running_turns(self, request, queryset):
        counts: dict[str, int] = {}
        for chat in queryset:
            outcome = streams_cancel_chat(chat=chat, reason="user")
            result = (
                "not running" if outcome is None else ("cancelled" if outcome.cancelled else outcome.reason.replace("_", " "))
            )
            tally(counts, result)
            if outcome is not None and outcome.cancelled:
                self.log_change(request, chat, f"Cancelled stream {outcome.stream_id} (settled: {outcome.settled}).")
        report(self, request, counts, "Cancel")

    @admin.action(description="Close the selected chats (stop the turn, warming off)", permissions=["change"])
    def close_chats(self, request, queryset):
        counts: dict[str, int] = {}
        for chat in queryset:
            answer = chat_close(chat=chat)
            tally(counts, "closed")
            if answer["cancelled"]:
                tally(counts, "turns stopped")
            if answer["warming_disabled"]:
                tally(counts, "warming disabled")
            self.log_change(request, chat, f"Closed: {answer}.")
        report(self, request, counts, "Close")

    @admin.action(description="Enable cache warming", permissions=["change"])
    def enable_warming(self, request, queryset):
        set_warming(self, request, [(chat, chat) for chat in queryset], enabled=True)

    @admin.action(description="Disable cache warming", permissions=["change"])
    def disable_warming(self, request, queryset):
        set_warming(self, request, [(chat, chat) for chat in queryset], enabled=False)

    @admin.action(description="Warm the prompt cache now", permissions=["change"])
    def warm_now(self, request, queryset):
        warm_now(self, request, [(chat, chat.pk) for chat in queryset])

    @admin.action(description="Run the sweeper on the selected chats' live streams", permissions=["change"])
    def sweep(self, request, queryset):
        ids = list(Stream.objects.filter(chat__in=queryset, status__in=Stream.LIVE_STATUSES).values_list("pk", flat=True))
        result = streams_sweep(stream_ids=ids) if ids else {"alive": 0, "interrupted": []}
        for chat in queryset:
            self.log_change(request, chat, f"Sweep: {len(result['interrupted'])} interrupted in this selection.")
        report(self, request, {"alive": result["alive"], "interrupted": len(result["interrupted"])}, "Sweep")

    @admin.action(description="Move the selected chats to the trash (stop the turn, warming off)", permissions=["change"])
    def trash(self, request, queryset):
        counts: dict[str, int] = {}
        for chat in queryset.filter(deleted_at__isnull=True):
            answer = chat_trash(chat=chat)
            tally(counts, "moved to the trash")
            if answer["cancelled"]:
                tally(counts, "turns stopped")
            self.log_change(request, chat, f"Moved to the trash: {answer}.")
        report(self, request, counts, "Trash")

    @admin.action(description="Restore the selected chats from the trash", permissions=["change"])
    def restore(self, request, queryset):
        counts: dict[str, int] = {}
        for chat in queryset.filter(deleted_at__isnull=False):
            try:
                chat_restore(chat=chat)
            except RestoreExpired:
                tally(counts, "too old to restore")
                continue
            tally(counts, "restored")
            self.log_change(request, chat, "Restored from the trash.")
        report(self, request, counts, "Restore")

    @admin.action(description="Purge the selected chats in the trash now (the spend ledger is kept)", permissions=["delete"])
    def purge(self, request, queryset):
        outcome = trash_purge(chat_ids=list(queryset.filter(deleted_at__isnull=False).values_list("pk", flat=True)))
        report(
            self,
            request,
            {
                "chats purged": outcome["chats"],
                "messages": outcome["messages"],
                "streams": outcome["streams"],
                "attached files": outcome["attachments"],
            },
            "Purge",
        )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """People's named API tokens: who, which, when last used; an operator may revoke one (delete:
    its sockets are closed as when its owner revokes it). Keys are never stored, so never shown."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("user", "name", "prefix", "key_hash", "created_at", "last_used_at")

    def has_add_permission(self, request):
        return False  # made by their owner in Settings, where the key is shown once
