"""Admin for workspaces, memberships, messages, attachments and share links. Chats are administered by ``mothership.admin``,
which shows their reconciled liveness and acts through the services of every app."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from chats.models import Attachment, ChatImport, ChatShare, Membership, Message, Workspace
from chats.services import shares_revoke


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "created_at"]
    search_fields = ["name", "id"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role", "workspace"]
    search_fields = ["user__username", "workspace__name"]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = [
        "role",
        "status",
        "content",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "created_at",
    ]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "chat", "role", "status", "created_at"]
    list_filter = ["role", "status"]
    search_fields = ["id", "chat__title", "content"]
    readonly_fields = ["id", "chat", "stream", "created_at"]


@admin.register(ChatImport)
class ChatImportAdmin(admin.ModelAdmin):
    """Imports as they happened: read-only (a record of what came in, by whom)."""

    list_display = ["created_at", "workspace", "user", "source", "filename", "size", "chat_count", "message_count"]
    list_filter = ["source"]
    search_fields = ["filename", "workspace__name", "user__username"]
    date_hierarchy = "created_at"
    fields = ["id", "created_at", "workspace", "user", "source", "filename", "size", "message_count", "chats", "notes_list"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="chats")
    def chat_count(self, record: ChatImport) -> int:
        return len(record.chat_ids)

    @admin.display(description="chats created")
    def chats(self, record: ChatImport):
        links = ((reverse("admin:chats_chat_change", args=[pk]), pk) for pk in record.chat_ids)
        return format_html_join(mark_safe("<br>"), '<a href="{}">{}</a>', links) or "–"

    @admin.display(description="notes")
    def notes_list(self, record: ChatImport):
        return format_html_join(mark_safe("<br>"), "{}", ((note,) for note in record.notes)) or "–"


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """Files as they were uploaded: read-only (their bytes are opened through the app, by members)."""

    list_display = ["created_at", "name", "kind", "content_type", "size", "uploaded_by", "chat", "sent_at"]
    list_filter = ["kind", "content_type"]
    search_fields = ["name", "uploaded_by__username", "sha256"]
    date_hierarchy = "created_at"
    list_select_related = ["uploaded_by", "chat"]
    exclude = ["messages", "text"]
    readonly_fields = [f.name for f in Attachment._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ShareActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return [("no", "active"), ("yes", "revoked")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ChatShare)
class ChatShareAdmin(admin.ModelAdmin):
    """Share links: made by members on the chat page (never here); staff may revoke them."""

    list_display = ["title", "chat", "created_by", "created_at", "revoked", "revoked_at"]
    list_filter = [ShareActiveFilter, "created_at"]
    search_fields = ["title", "chat__title", "created_by__username", "token"]
    list_select_related = ["chat", "created_by"]
    readonly_fields = ["token", "chat", "created_by", "created_at", "revoked_at", "title", "messages"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.display(boolean=True, description="revoked")
    def revoked(self, obj) -> bool:
        return obj.revoked_at is not None

    @admin.action(description="Revoke the selected share links (they answer 404)", permissions=["change"])
    def revoke(self, request, queryset):
        selected = queryset.count()
        active = list(queryset.filter(revoked_at__isnull=True))
        count = shares_revoke(shares=queryset.filter(pk__in=[share.pk for share in active]))
        for share in active:
            self.log_change(request, share, "Revoked.")
        self.message_user(request, f"Revoke: {count} revoked, {selected - count} already revoked.")
