from django.conf import settings
from django.contrib import admin
from django.contrib.auth import urls as auth_urls
from django.urls import include, path
from django.utils.functional import lazy
from drf_spectacular.views import SpectacularAPIView

from chats.api import attachment_views as attachment_api
from chats.api import views as chat_api
from mothership import settings_views, views, workspace_views
from mothership.api import views as mothership_api
from spend.api import views as spend_api
from streams.api import views as stream_api
from streams.providers import models
from warming.api import views as warming_api

# The admin's front page names the deployment's model (each stream records its own).
admin.site.index_title = lazy(
    lambda: "Site administration · models: " + ", ".join(f"{m.id} ({m.provider} / {m.model})" for m in models()), str
)()

api_patterns = [
    path("auth/token", mothership_api.TokenObtainApi.as_view(), name="api-token"),
    path("auth/ws-ticket", mothership_api.WsTicketApi.as_view(), name="api-ws-ticket"),
    path("mothership/workspaces", chat_api.WorkspaceListApi.as_view(), name="api-workspaces"),
    path("mothership/workspaces/<str:workspace_id>/import", chat_api.WorkspaceImportApi.as_view(), name="api-workspace-import"),
    path(
        "mothership/workspaces/<str:workspace_id>/members",
        chat_api.WorkspaceMemberListApi.as_view(),
        name="api-workspace-members",
    ),
    path(
        "mothership/workspaces/<str:workspace_id>/members/<str:user_id>",
        chat_api.WorkspaceMemberApi.as_view(),
        name="api-workspace-member",
    ),
    path("mothership/workspaces/<str:workspace_id>/budget", spend_api.WorkspaceBudgetApi.as_view(), name="api-workspace-budget"),
    path("mothership/models", stream_api.ModelListApi.as_view(), name="api-models"),
    path("mothership/chats", mothership_api.ChatListCreateApi.as_view(), name="api-chats"),
    path("mothership/chats/<str:chat_id>", mothership_api.ChatDetailApi.as_view(), name="api-chat"),
    path("mothership/chats/<str:chat_id>/messages", stream_api.ChatMessagesApi.as_view(), name="api-chat-messages"),
    path(
        "mothership/chats/<str:chat_id>/messages/<str:message_id>", stream_api.ChatMessageApi.as_view(), name="api-chat-message"
    ),
    path(
        "mothership/chats/<str:chat_id>/messages/<str:message_id>/regenerate",
        stream_api.ChatMessageAnswerAgainApi.as_view(continues=False),
        name="api-chat-message-regenerate",
    ),
    path(
        "mothership/chats/<str:chat_id>/messages/<str:message_id>/edit",
        stream_api.ChatMessageEditApi.as_view(),
        name="api-chat-message-edit",
    ),
    path(
        "mothership/chats/<str:chat_id>/messages/<str:message_id>/continue",
        stream_api.ChatMessageAnswerAgainApi.as_view(continues=True),
        name="api-chat-message-continue",
    ),
    path("mothership/chats/<str:chat_id>/cancel", stream_api.ChatCancelApi.as_view(), name="api-chat-cancel"),
    path(
        "mothership/chats/<str:chat_id>/tool-calls/<str:call_id>/approval",
        stream_api.ChatToolApprovalApi.as_view(),
        name="api-chat-tool-approval",
    ),
    path("mothership/chats/<str:chat_id>/export", chat_api.ChatExportApi.as_view(), name="api-chat-export"),
    path(
        "mothership/chats/<str:chat_id>/attachments",
        attachment_api.ChatAttachmentUploadApi.as_view(),
        name="api-chat-attachments",
    ),
    path(
        "mothership/chats/<str:chat_id>/attachments/<str:attachment_id>",
        attachment_api.ChatAttachmentApi.as_view(),
        name="api-chat-attachment",
    ),
    path(
        "mothership/chats/<str:chat_id>/attachments/<str:attachment_id>/thumbnail",
        attachment_api.ChatAttachmentThumbnailApi.as_view(),
        name="api-chat-attachment-thumbnail",
    ),
    path("mothership/chats/<str:chat_id>/close", mothership_api.ChatCloseApi.as_view(), name="api-chat-close"),
    path("mothership/chats/<str:chat_id>/restore", mothership_api.ChatRestoreApi.as_view(), name="api-chat-restore"),
    path("mothership/chats/<str:chat_id>/seen", mothership_api.ChatSeenApi.as_view(), name="api-chat-seen"),
    path("mothership/chats/<str:chat_id>/share", chat_api.ChatShareApi.as_view(), name="api-chat-share"),
    path("mothership/chats/<str:chat_id>/warming", warming_api.ChatWarmingApi.as_view(), name="api-chat-warming"),
    path("mothership/search", chat_api.SearchApi.as_view(), name="api-search"),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
]

# Sign-in, sign-out and password change; password reset only when mail can reach the user.
account_patterns = [p for p in auth_urls.urlpatterns if settings.MOTHERSHIP_PASSWORD_RESET or "reset" not in p.name]

urlpatterns = [
    path("", views.home, name="home"),
    path("chats/new", views.chat_new, name="chat-new"),
    path("chats/<str:chat_id>/", views.chat_page, name="chat"),
    path("s/<str:token>", views.share_page, name="share"),
    path("settings/", settings_views.profile, name="settings"),
    path("settings/password/", settings_views.password, name="settings-password"),
    path("settings/tokens/", settings_views.tokens, name="settings-tokens"),
    path("settings/tokens/<int:token_id>/revoke", settings_views.token_revoke, name="settings-token-revoke"),
    path("settings/tokens/sign-in/revoke", settings_views.sign_in_token_revoke, name="settings-sign-in-token-revoke"),
    path("settings/appearance/", settings_views.appearance, name="settings-appearance"),
    path("settings/model/", settings_views.default_model, name="settings-model"),
    path("settings/workspaces/", settings_views.workspaces, name="settings-workspaces"),
    path("workspaces/<str:workspace_id>/", workspace_views.workspace_page, name="workspace"),
    path("workspaces/<str:workspace_id>/members/add", workspace_views.member_add, name="workspace-member-add"),
    path("workspaces/<str:workspace_id>/members/<str:user_id>/role", workspace_views.member_role, name="workspace-member-role"),
    path(
        "workspaces/<str:workspace_id>/members/<str:user_id>/remove",
        workspace_views.member_remove,
        name="workspace-member-remove",
    ),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("accounts/", include(account_patterns)),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
]

handler404 = "mothership.views.not_found"
