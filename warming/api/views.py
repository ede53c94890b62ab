from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.selectors import chat_get_for_manager, chat_get_for_member
from mothership.infra.throttles import user_rate_check
from warming import services


class _Checked(serializers.Field):
    """A value checked by one of the service's validators (the same rules as the socket's)."""

    def __init__(self, *, check, **kwargs):
        self.check = check
        super().__init__(**kwargs)

    def validate_empty_values(self, data):
        if data is None:  # an explicit null is refused by the validator, never read as "unchanged"
            return False, data
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        try:
            return self.check(data)
        except services.WarmingInputError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value


class ChatWarmingApi(APIView):
    """The conversation's cache warming: the same fields as the ``cache-warming`` surface."""

    class Input(serializers.Serializer):
        enabled = _Checked(check=services.validate_enabled, required=False)
        interval_seconds = _Checked(check=services.validate_interval, required=False)

        def validate(self, attrs):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field; use enabled and/or interval_seconds."] for name in unknown}
                )
            if not attrs:
                raise serializers.ValidationError("Give enabled and/or interval_seconds.")
            return attrs

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, chat_id):
        chat = chat_get_for_member(user=request.user, chat_id=chat_id)
        return Response(services.warming_fields(services.warming_get(chat=chat)))

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT},
        description='{"enabled": bool, "interval_seconds": int}, either or both.',
    )
    def put(self, request, chat_id):
        chat = chat_get_for_manager(user=request.user, chat_id=chat_id)  # warming spends money: creator or owner
        payload = self.Input(data=request.data)
        payload.is_valid(raise_exception=True)
        user_rate_check(scope="warming", user=request.user)
        try:
            schedule = services.warming_update(chat=chat, **payload.validated_data)
        except services.WarmingInputError as exc:  # a rule of the chat's own (its model keeps no cache)
            raise serializers.ValidationError({"enabled": [str(exc)]}) from None
        return Response(services.warming_fields(schedule))
