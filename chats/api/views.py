from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import selectors, services
from chats.api.serializers import ChatDetailOutput, ChatOutput, WorkspaceOutput
from mothership.api import Conflict, StrictCharField, StrictUUIDField
from streams.services import StreamConflict, stream_cancel, stream_start
from warming import services as warming_services


class WorkspaceListApi(APIView):
    @extend_schema(responses=WorkspaceOutput(many=True))
    def get(self, request):
        return Response(WorkspaceOutput(selectors.workspace_list(user=request.user), many=True).data)


class ChatListCreateApi(APIView):
    class FilterInput(serializers.Serializer):
        workspace = serializers.UUIDField(required=False)

    class CreateInput(serializers.Serializer):
        workspace = serializers.UUIDField()
        title = StrictCharField(max_length=200, trim_whitespace=True)

    @extend_schema(parameters=[FilterInput], responses=ChatOutput(many=True))
    def get(self, request):
        filters = self.FilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        workspace_id = filters.validated_data.get("workspace")
        workspace = selectors.workspace_get(user=request.user, workspace_id=workspace_id) if workspace_id else None
        views = selectors.chat_list(user=request.user, workspace=workspace)
        return Response(ChatOutput(views, many=True).data)

    @extend_schema(request=CreateInput, responses={201: ChatOutput})
    def post(self, request):
        payload = self.CreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        workspace = selectors.workspace_get(user=request.user, workspace_id=payload.validated_data["workspace"])
        chat = services.chat_create(workspace=workspace, title=payload.validated_data["title"])
        detail = selectors.chat_detail(user=request.user, chat_id=chat.id)
        return Response(ChatOutput(detail.view).data, status=status.HTTP_201_CREATED)


class ChatDetailApi(APIView):
    @extend_schema(responses=ChatDetailOutput)
    def get(self, request, chat_id):
        return Response(ChatDetailOutput(selectors.chat_detail(user=request.user, chat_id=chat_id)).data)


class MessageSendApi(APIView):
    class Input(serializers.Serializer):
        content = StrictCharField(max_length=100_000, trim_whitespace=True)

    @extend_schema(
        request=Input,
        responses={201: inline_serializer("MessageSendOutput", {"stream_id": serializers.UUIDField(), "message_id": serializers.UUIDField()})},
    )
    def post(self, request, chat_id):
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            turn = stream_start(chat=chat, content=payload.validated_data["content"])
        except StreamConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(
            {
                "stream_id": str(turn.stream.id),
                "message_id": str(turn.assistant_message.id),
                "user_message_id": str(turn.user_message.id),
            },
            status=status.HTTP_201_CREATED,
        )


_CancelOutput = inline_serializer(
    "CancelOutput",
    {
        "ok": serializers.BooleanField(),
        "cancelled": serializers.BooleanField(),
        "stream_id": serializers.UUIDField(),
        "reason": serializers.ChoiceField(choices=["not_active", "stream_mismatch", "already_finished"], allow_null=True),
        "settled": serializers.BooleanField(),
    },
)


class CancelApi(APIView):
    """Stop exactly the turn named by ``stream_id``; a stale id never stops a newer turn."""

    class Input(serializers.Serializer):
        stream_id = StrictUUIDField()

    @extend_schema(request=Input, responses={200: _CancelOutput})
    def post(self, request, chat_id):
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        outcome = stream_cancel(chat=chat, stream_id=payload.validated_data["stream_id"], reason="user")
        return Response(outcome.as_dict())


class CloseApi(APIView):
    """Close the conversation: warming off (``closed``), the running turn stopped, ``closed_at`` recorded."""

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
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        return Response(services.chat_close(chat=chat))


class WarmingApi(APIView):
    """The conversation's cache warming: the same fields as the ``cache-warming`` surface."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, chat_id):
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        return Response(warming_services.warming_fields(warming_services.warming_get(chat=chat)))

    @extend_schema(
        request=inline_serializer("WarmingInput", {"enabled": serializers.BooleanField(required=False), "interval_seconds": serializers.IntegerField(required=False)}),
        responses={200: OpenApiTypes.OBJECT},
    )
    def put(self, request, chat_id):
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        data = request.data
        if not isinstance(data, dict):
            raise ValidationError({"non_field_errors": ["Send a JSON object: {\"enabled\": bool, \"interval_seconds\": int}."]})
        unknown = sorted(set(data) - {"enabled", "interval_seconds"})
        if unknown:
            raise ValidationError({name: ["Unknown field; use enabled and/or interval_seconds."] for name in unknown})
        if not data:
            raise ValidationError({"non_field_errors": ["Give enabled and/or interval_seconds."]})
        errors = {}
        for field, validate in (("enabled", warming_services.validate_enabled), ("interval_seconds", warming_services.validate_interval)):
            if field in data:
                try:
                    validate(data[field])  # an explicit null is refused too, never read as "unchanged"
                except warming_services.WarmingInputError as exc:
                    errors[field] = [str(exc)]
        if errors:
            raise ValidationError(errors)
        schedule = warming_services.warming_update(chat=chat, enabled=data.get("enabled"), interval_seconds=data.get("interval_seconds"))
        return Response(warming_services.warming_fields(schedule))
