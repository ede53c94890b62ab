"""The API of the reconciled chat view and of the operations that span apps (close)."""

from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotAuthenticated, ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from chats import selectors as chat_selectors
from chats.models import SYSTEM_PROMPT_MAX
from chats.services import (
    TooManyPinned,
    chat_create,
    chat_mark_seen,
    chat_rename,
    chat_set_archived,
    chat_set_model,
    chat_set_pinned,
    chat_set_system_prompt,
    chat_set_tools,
    tools_validate,
)
from mothership import selectors, services
from mothership.api.serializers import ChatDetailOutput, ChatOutput
from mothership.infra import cursors
from mothership.infra.api import Conflict, Gone, StrictBooleanField, StrictCharField, StrictUUIDField
from mothership.infra.throttles import user_rate_check
from mothership.models import ApiToken
from mothership.ws_auth import WS_TICKET_SECONDS, token_credential, ws_ticket_issue
from streams.providers import model_get, models
from streams.services import NotInChat, StreamConflict, chat_show_branch

BRANCH_BUSY = "A reply is streaming in this conversation; switch versions once it ends (or stop it)."


def offered_model(value: str) -> None:
    if model_get(value) is None:
        raise serializers.ValidationError(
            f"No model {value!r} here; GET /api/mothership/models lists them ({', '.join(m.id for m in models())})."
        )


class TokenObtainApi(ObtainAuthToken):
    """``POST /api/auth/token`` (and ``DELETE`` to revoke it): DRF's, with the app's parsers (DRF's own let a deeply nested body
    through as a 500), and Django's request handed to ``authenticate`` so that a failure counts
    towards the username's lockout (django-axes reads and marks that request). Its rate per address
    is the sign-in form's (``mothership.infra.login_limits.SignInRateMiddleware``)."""

    parser_classes = api_settings.DEFAULT_PARSER_CLASSES

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "request": self.request._request}

    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        # A success starts the failure count again, as a form sign-in does (no session is made here).
        AxesProxyHandler.user_logged_in(sender=type(self), request=request._request, user=user)
        token, _created = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})

    @extend_schema(request=None, responses={204: None, 401: None, 403: None})
    def delete(self, request, *args, **kwargs):
        """Revoke the caller's API token (session or token authenticated): the named token the
        request carries, else the account's ``POST /api/auth/token`` one."""
        if not request.user.is_authenticated:
            raise NotAuthenticated()
        if isinstance(request.auth, ApiToken):
            services.api_token_delete(user=request.user, token_id=request.auth.pk)
        else:
            services.api_token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WsTicketApi(APIView):
    """``POST /api/auth/ws-ticket``: a ticket for ``/ws/?ticket=…``, valid 60 s and used once, so
    that API clients never put their API token in a URL."""

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "WsTicketOutput", {"ticket": serializers.CharField(), "expires_in": serializers.IntegerField()}
            )
        },
    )
    def post(self, request):
        token_key = token_credential(request.auth)  # DRF's token, or a named one (by its digest)
        session_key = None if token_key else request.session.session_key
        ticket = ws_ticket_issue(user=request.user, session_key=session_key, token_key=token_key)
        return Response({"ticket": ticket, "expires_in": WS_TICKET_SECONDS})


class ChatListCreateApi(APIView):
    class FilterInput(cursors.PageInput):
        workspace = serializers.UUIDField(required=False)
        archived = serializers.BooleanField(required=False, help_text="1: the archived chats only (else they are left out).")

    class CreateInput(serializers.Serializer):
        workspace = serializers.UUIDField()
        # Optional: an untitled chat is named by its first message.
        title = StrictCharField(max_length=200, trim_whitespace=True, required=False, allow_blank=True)
        model = StrictCharField(required=False, max_length=64, validators=[offered_model])
        system_prompt = StrictCharField(required=False, max_length=SYSTEM_PROMPT_MAX, allow_blank=True, trim_whitespace=True)

    @extend_schema(parameters=[FilterInput], responses=ChatOutput(many=True))
    def get(self, request):
        filters = self.FilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        workspace_id = filters.validated_data.get("workspace")
        workspace = chat_selectors.workspace_get(user=request.user, workspace_id=workspace_id) if workspace_id else None
        try:
            views, following = selectors.chat_list(
                user=request.user,
                workspace=workspace,
                cursor=filters.validated_data.get("cursor"),
                limit=filters.validated_data.get("limit", selectors.CHAT_PAGE),
                archived=filters.validated_data.get("archived", False),
            )
        except cursors.BadCursor:
            raise ValidationError({"cursor": ["Not a cursor this API gave; use the one from the Link header."]}) from None
        # Newest first, a page at a time (the first starts with the pinned ones): the next page's URL
        # is in the Link header (rel="next").
        return Response(ChatOutput(views, many=True).data, headers=cursors.link_header(request, following))

    @extend_schema(request=CreateInput, responses={201: ChatOutput})
    def post(self, request):
        payload = self.CreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        workspace = chat_selectors.workspace_get(user=request.user, workspace_id=payload.validated_data["workspace"])
        user_rate_check(scope="chat_create", user=request.user)  # MOTHERSHIP_CHAT_CREATE_RATE: 429 past it
        chat = chat_create(
            workspace=workspace,
            title=payload.validated_data.get("title", ""),
            created_by=request.user,
            # None given: the caller's default model (Settings), while LLM_MODELS still offers it.
            model_id=payload.validated_data.get("model") or selectors.user_default_model(user=request.user),
            system_prompt=payload.validated_data.get("system_prompt", ""),
        )
        detail = selectors.chat_detail(user=request.user, chat_id=chat.id)
        return Response(ChatOutput(detail.view).data, status=status.HTTP_201_CREATED)


TRASH_REFUSED_RESPONSE = OpenApiResponse(
    description="A member who neither created the chat nor owns its workspace: " + chat_selectors.TRASH_REFUSED
)


# What only the chat's creator or an owner may change: what its turns cost and do, and where everyone finds it.
MANAGED_FIELDS = ("model", "title", "system_prompt", "tools", "archived", "pinned")


class ChatDetailApi(APIView):
    class UpdateInput(serializers.Serializer):
        model = StrictCharField(required=False, max_length=64, validators=[offered_model])
        title = StrictCharField(required=False, max_length=200, trim_whitespace=True)
        # Blank: none. Sent before the conversation from the next turn on (and by its warms).
        system_prompt = StrictCharField(required=False, max_length=SYSTEM_PROMPT_MAX, allow_blank=True, trim_whitespace=True)
        # The MCP tools its turns may call: "<server>.<tool>" or "<server>.*"; [] for none.
        tools = serializers.ListField(child=StrictCharField(max_length=100), required=False, max_length=100)
        archived = StrictBooleanField(required=False)
        pinned = StrictBooleanField(required=False)
        # Show the branch through this message (down to its newest replies): what its next turn sends.
        leaf_id = StrictUUIDField(required=False)

        def validate_tools(self, value):
            try:
                return tools_validate(value)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc)) from None

        def validate(self, attrs):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            names = ", ".join(self.fields)
            if unknown:
                raise serializers.ValidationError({name: [f"Unknown field; use {names}."] for name in unknown})
            if not attrs:
                raise serializers.ValidationError(f"Give one or more of {names}.")
            return attrs

    @extend_schema(responses=ChatDetailOutput)
    def get(self, request, chat_id):
        return Response(ChatDetailOutput(selectors.chat_detail(user=request.user, chat_id=chat_id)).data)

    @extend_schema(
        request=UpdateInput,
        responses={
            200: ChatDetailOutput,
            403: OpenApiResponse(
                description="A field other than leaf_id, from a member who neither created the chat nor owns its workspace."
            ),
            409: OpenApiResponse(
                description="leaf_id while a reply streams (the branch it writes to stays shown), or a pin past the workspace's "
                "most pinned chats."
            ),
        },
    )
    def patch(self, request, chat_id):
        """Rename the chat, change its model, its system prompt or its tools, archive or pin it (its
        creator or an owner: these set what its turns cost and do, and where everyone finds it);
        show another branch (``leaf_id``: any member, while nothing streams)."""
        chat = chat_selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        payload = self.UpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        if any(name in data for name in MANAGED_FIELDS) and not chat_selectors.user_may_manage(user=request.user, chat=chat):
            raise PermissionDenied(chat_selectors.MANAGE_REFUSED)
        if "model" in data:
            chat_set_model(chat=chat, model_id=data["model"])
        if "title" in data:
            chat_rename(chat=chat, title=data["title"])
        if "system_prompt" in data:
            chat_set_system_prompt(chat=chat, system_prompt=data["system_prompt"])
        if "tools" in data:
            chat_set_tools(chat=chat, tools=data["tools"])
        if "archived" in data:
            chat_set_archived(chat=chat, archived=data["archived"])
        if "pinned" in data:
            try:
                chat_set_pinned(chat=chat, pinned=data["pinned"])
            except TooManyPinned as exc:
                raise Conflict(str(exc)) from None
        if "leaf_id" in data:
            try:
                chat_show_branch(chat=chat, message_id=data["leaf_id"])
            except NotInChat as exc:
                raise ValidationError({"leaf_id": [str(exc)]}) from None
            except StreamConflict:
                raise Conflict(BRANCH_BUSY) from None
        return Response(ChatDetailOutput(selectors.chat_detail(user=request.user, chat_id=chat_id)).data)

    @extend_schema(
        request=None,
        responses={
            204: None,
            403: TRASH_REFUSED_RESPONSE,
        },
    )
    def delete(self, request, chat_id):
        """Move the chat to the trash (its creator or an owner): a live turn is stopped first, warming
        turned off; it is gone from every list and page (404) and may be restored for
        ``MOTHERSHIP_TRASH_DAYS`` (``POST …/restore``), then it is purged."""
        chat = chat_selectors.chat_get_for_trash(user=request.user, chat_id=chat_id, trashed=False)
        services.chat_trash(chat=chat)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChatRestoreApi(APIView):
    """Take a chat back from the trash (its creator or an owner), within ``MOTHERSHIP_TRASH_DAYS``."""

    @extend_schema(
        request=None,
        responses={
            200: ChatOutput,
            403: TRASH_REFUSED_RESPONSE,
            404: OpenApiResponse(description="No such chat in the trash, or the caller is not a member of its workspace."),
            410: OpenApiResponse(description="In the trash for longer than MOTHERSHIP_TRASH_DAYS: it can no longer be restored."),
        },
    )
    def post(self, request, chat_id):
        chat = chat_selectors.chat_get_for_trash(user=request.user, chat_id=chat_id, trashed=True)
        try:
            services.chat_restore(chat=chat)
        except services.RestoreExpired as exc:
            raise Gone(str(exc)) from None
        return Response(ChatOutput(selectors.chat_detail(user=request.user, chat_id=chat.pk).view).data)


class ChatSeenApi(APIView):
    """The caller has the chat in front of them: its replies so far are no longer "new" on their tiles."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request, chat_id):
        chat = chat_selectors.chat_get_for_member(user=request.user, chat_id=chat_id)  # 404 for anyone else
        chat_mark_seen(user=request.user, chat=chat)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChatCloseApi(APIView):
    """Close the conversation: the running turn stopped, warming off (``closed``), ``closed_at`` recorded."""

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "CloseOutput",
                {
                    "ok": serializers.BooleanField(),
                    "warming_disabled": serializers.BooleanField(),
                    "cancelled": serializers.BooleanField(),
                    "stream_id": serializers.UUIDField(allow_null=True),
                },
            )
        },
    )
    def post(self, request, chat_id):
        chat = chat_selectors.chat_get_for_manager(user=request.user, chat_id=chat_id)  # creator or owner
        return Response(services.chat_close(chat=chat))
