from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.attachments import AttachmentRefused
from chats.models import Chat
from chats.selectors import chat_get_for_member, chat_message_get, chat_messages_page
from mothership.infra import cursors
from mothership.infra.api import (
    Conflict,
    PaymentRequired,
    StrictBooleanField,
    StrictCharField,
    StrictUUIDField,
    TooManyRequests,
)
from mothership.infra.throttles import user_rate_check
from spend.services import BudgetExceeded
from streams.api.serializers import MessageCostOutput, MessageSendInput, messages_output
from streams.providers import models
from streams.selectors import STOP_REFUSED, user_may_stop
from streams.services import (
    CannotAnswerAgain,
    StreamConflict,
    ToolCallNotWaiting,
    TooManyTurns,
    message_send,
    stream_answer_again,
    stream_cancel,
    stream_edit,
    tool_call_decide,
)

# When a user at the cap of turns running at once should look again (a turn takes seconds).
TURN_CAP_RETRY_SECONDS = 5


class ChatMessagesApi(APIView):
    """``GET``: earlier messages, a page at a time (newest page first, each oldest first), from the
    detail's ``messages_cursor``; ``POST``: send one, which starts a turn."""

    @extend_schema(parameters=[cursors.PageInput], responses=MessageCostOutput(many=True))
    def get(self, request, chat_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        page = cursors.PageInput(data=request.query_params)
        page.is_valid(raise_exception=True)
        try:
            messages, earlier = chat_messages_page(
                chat=chat, cursor=page.validated_data.get("cursor"), limit=page.validated_data.get("limit", 100)
            )
        except cursors.BadCursor:
            raise ValidationError({"cursor": ["Not a cursor this API gave; use the one from the Link header."]}) from None
        return Response(messages_output(messages), headers=cursors.link_header(request, earlier))

    Input = MessageSendInput

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
            409: OpenApiResponse(
                description="A reply is already streaming in this chat (or `interrupt` names another turn than the "
                "live one): the body's active_stream_id is the live turn; nothing was stopped or started."
            ),
            402: OpenApiResponse(
                description='`{"code": "budget_exceeded", "detail"}`: the prompt alone would cross the workspace\'s '
                "monthly budget or the sender's daily one; nothing was queued."
            ),
            429: OpenApiResponse(
                description="Past the sender's rate (MOTHERSHIP_SEND_RATE) or turns at once (MOTHERSHIP_MAX_CONCURRENT_TURNS)."
            ),
            403: OpenApiResponse(description="`interrupt` names another member's turn: " + STOP_REFUSED),
        },
    )
    def post(self, request, chat_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        sent = payload.validated_data
        return _turn_started(
            lambda: message_send(
                chat=chat,
                user=request.user,
                content=sent["content"],
                attachment_ids=sent.get("attachments") or (),
                interrupt=sent.get("interrupt"),
            )
        )


def _turn_started(start) -> Response:
    """Run ``start`` (a service that starts a turn): 201 with the turn's ids, or why not as 4xx."""
    try:
        turn = start()
    except CannotAnswerAgain as exc:
        raise Conflict({"detail": str(exc), "active_stream_id": None}) from None
    except StreamConflict as exc:
        live = str(exc.active_stream_id) if exc.active_stream_id else None
        raise Conflict({"detail": str(exc), "active_stream_id": live}) from None
    except TooManyTurns as exc:
        raise TooManyRequests(str(exc), wait=TURN_CAP_RETRY_SECONDS) from None
    except BudgetExceeded as exc:
        raise PaymentRequired({"code": BudgetExceeded.code, "detail": str(exc)}) from None
    except Chat.DoesNotExist:
        raise Http404("No such chat.") from None
    except AttachmentRefused as exc:  # a file the chat's model cannot read (a send's, an edited question's)
        return Response({"detail": exc.detail, "code": exc.code}, status=exc.status)
    body = {
        "stream_id": str(turn.stream.id),
        "message_id": str(turn.assistant_message.id),
        "user_message_id": str(turn.user_message.id),
    }
    return Response(body, status=status.HTTP_201_CREATED)


_TurnOutput = inline_serializer(
    "AnswerAgainOutput",
    {"stream_id": serializers.UUIDField(), "message_id": serializers.UUIDField(), "user_message_id": serializers.UUIDField()},
)


def _message_in(chat, message_id):
    """The chat's message with this id (404 for any other id, a malformed one included)."""
    message = chat_message_get(chat=chat, message_id=message_id)
    if message is None:
        raise Http404("No such message in this chat.")
    return message


class ChatMessageApi(APIView):
    """One message as ``GET …/messages`` lists it: what a page shows under a reply once it ends."""

    @extend_schema(responses=MessageCostOutput)
    def get(self, request, chat_id, message_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        return Response(messages_output([_message_in(chat, message_id)])[0])


class ChatMessageEditApi(APIView):
    """``…/edit``: a new version of a sent message (a sibling of it, the old one and what followed kept
    as a branch), answered at once; the new branch is shown. As a send: its rate, cap and budget."""

    @extend_schema_serializer(component_name="MessageEditInput")
    class Input(serializers.Serializer):
        content = StrictCharField(max_length=100_000, trim_whitespace=True)

    @extend_schema(
        request=Input,
        responses={
            201: _TurnOutput,
            409: OpenApiResponse(
                description="Not a message a member sent, or a turn already live (then active_stream_id names it)."
            ),
            402: OpenApiResponse(description="Over budget, as for a sent message (`code: budget_exceeded`)."),
            429: OpenApiResponse(description="Past the sender's rate or turns at once, as for a sent message."),
        },
    )
    def post(self, request, chat_id, message_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        message = _message_in(chat, message_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        user_rate_check(scope="send", user=request.user)
        content = payload.validated_data["content"]
        return _turn_started(lambda: stream_edit(chat=chat, message_id=message.pk, content=content, user=request.user))


class ChatMessageAnswerAgainApi(APIView):
    """``…/regenerate`` (Retry, Regenerate): the chat's last reply answered again from the start;
    ``…/continue``: a stopped or interrupted reply goes on from its kept text, as one message."""

    continues = False

    @extend_schema(
        request=None,
        responses={
            201: _TurnOutput,
            409: OpenApiResponse(
                description="Not the chat's last reply, nothing to continue, a model that cannot continue, or a turn "
                "already live (then active_stream_id names it)."
            ),
            402: OpenApiResponse(description="Over budget, as for a sent message (`code: budget_exceeded`)."),
            429: OpenApiResponse(description="Past the sender's rate or turns at once, as for a sent message."),
        },
    )
    def post(self, request, chat_id, message_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        message = _message_in(chat, message_id)
        user_rate_check(scope="send", user=request.user)
        return _turn_started(
            lambda: stream_answer_again(chat=chat, message_id=message.pk, continues=self.continues, user=request.user)
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


class ChatCancelApi(APIView):
    """Stop exactly the turn named by ``stream_id``; a stale id never stops a newer turn. Its sender,
    the chat's creator or an owner may stop a turn; another member gets 403, a non-member 404."""

    @extend_schema_serializer(component_name="CancelInput")
    class Input(serializers.Serializer):
        stream_id = StrictUUIDField()

    @extend_schema(
        request=Input,
        responses={200: _CancelOutput, 403: OpenApiResponse(description="The turn is another member's: " + STOP_REFUSED)},
    )
    def post(self, request, chat_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        if not user_may_stop(user=request.user, chat=chat, stream_id=payload.validated_data["stream_id"]):
            raise PermissionDenied(STOP_REFUSED)
        outcome = stream_cancel(chat=chat, stream_id=payload.validated_data["stream_id"], reason="user")
        return Response(outcome.as_dict())


class ChatToolApprovalApi(APIView):
    """Approve or deny a tool call that waits for a person (a server with ``"approve": true``).

    Any member who may chat in the conversation answers, once; the turn goes on at once (a denied
    call is not made, and the model is told so). 404 when no call of its live turn waits with that
    id, 409 when it was already answered.
    """

    @extend_schema_serializer(component_name="ToolApprovalInput")
    class Input(serializers.Serializer):
        approve = StrictBooleanField()

    @extend_schema(
        request=Input,
        responses={
            200: inline_serializer(
                "ToolApprovalOutput",
                {"ok": serializers.BooleanField(), "callId": serializers.CharField(), "approved": serializers.BooleanField()},
            )
        },
    )
    def post(self, request, chat_id, call_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        approve = payload.validated_data["approve"]
        try:
            tool_call_decide(chat=chat, call_id=call_id, approve=approve)
        except ValueError as exc:
            raise ValidationError({"callId": [str(exc)]}) from None
        except ToolCallNotWaiting as exc:
            if exc.code == "not_found":
                raise Http404(str(exc)) from None
            raise Conflict(str(exc)) from None
        return Response({"ok": True, "callId": call_id, "approved": approve})


class ModelListApi(APIView):
    """The models a chat may use (``LLM_MODELS``), the default first; no keys, no endpoints."""

    @extend_schema(
        responses=inline_serializer(
            "ModelOutput",
            {
                "id": serializers.CharField(),
                "label": serializers.CharField(),
                "provider": serializers.ChoiceField(choices=["local", "anthropic", "openai"]),
                "model": serializers.CharField(),
                "prompt_cache": serializers.BooleanField(),
                "prefill": serializers.BooleanField(),
                "images": serializers.BooleanField(help_text="It reads image attachments."),
                "documents": serializers.BooleanField(
                    help_text="It reads PDFs as documents; else a PDF is sent as its text (one without text is refused)."
                ),
                "default": serializers.BooleanField(),
            },
            many=True,
        )
    )
    def get(self, request):
        offered = models()
        return Response([{**m.public(), "default": i == 0} for i, m in enumerate(offered)])
