from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.models import Chat
from chats.selectors import chat_get_for_member
from mothership.infra.api import Conflict, StrictCharField, StrictUUIDField
from streams.services import StreamConflict, stream_cancel, stream_start


class ChatMessageSendApi(APIView):
    @extend_schema_serializer(component_name="MessageSendInput")
    class Input(serializers.Serializer):
        content = StrictCharField(max_length=100_000, trim_whitespace=True)

    @extend_schema(
        request=Input,
        responses={
            201: inline_serializer(
                "MessageSendOutput",
                {
                    "stream_id": serializers.UUIDField(),
                    "message_id": serializers.UUIDField(),
                    "user_message_id": serializers.UUIDField(),
                },
            ),
            409: OpenApiResponse(description="A reply is already streaming in this chat; stop it or wait for it to finish."),
        },
    )
    def post(self, request, chat_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            turn = stream_start(chat=chat, content=payload.validated_data["content"])
        except StreamConflict as exc:
            raise Conflict(str(exc)) from None
        except Chat.DoesNotExist:
            raise Http404("No such chat.") from None
        body = {
            "stream_id": str(turn.stream.id),
            "message_id": str(turn.assistant_message.id),
            "user_message_id": str(turn.user_message.id),
        }
        return Response(body, status=status.HTTP_201_CREATED)


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


class ChatCancelApi(APIView):
    """Stop exactly the turn named by ``stream_id``; a stale id never stops a newer turn."""

    @extend_schema_serializer(component_name="CancelInput")
    class Input(serializers.Serializer):
        stream_id = StrictUUIDField()

    @extend_schema(request=Input, responses={200: _CancelOutput})
    def post(self, request, chat_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        outcome = stream_cancel(chat=chat, stream_id=payload.validated_data["stream_id"], reason="user")
        return Response(outcome.as_dict())
