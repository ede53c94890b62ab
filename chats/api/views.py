from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import search, selectors
from chats.api.serializers import SearchOutput, WorkspaceOutput
from mothership.infra import cursors
from mothership.infra.api import StrictCharField


class WorkspaceListApi(APIView):
    @extend_schema(responses=WorkspaceOutput(many=True))
    def get(self, request):
        return Response(WorkspaceOutput(selectors.workspace_list(user=request.user), many=True).data)


class SearchApi(APIView):
    """Search the titles and the message text of a workspace's chats (every branch; archived chats
    included, the trash not), best matches first. Words match their other forms ("plans" finds
    "plan"); "quoted words" are a phrase, ``or`` joins alternatives, ``-word`` leaves out."""

    class Input(serializers.Serializer):
        workspace = serializers.UUIDField()
        q = StrictCharField(max_length=search.QUERY_MAX, trim_whitespace=True, help_text="The words to find.")
        cursor = serializers.CharField(required=False, max_length=400, help_text="From the previous page's ``next``.")
        limit = serializers.IntegerField(required=False, min_value=1, max_value=search.PAGE_MAX, default=search.PAGE)

        def validate_q(self, value):
            try:
                return search.parse_query(value)
            except search.BadQuery as exc:
                raise serializers.ValidationError(str(exc)) from None

    @extend_schema(parameters=[Input], responses=SearchOutput)
    def get(self, request):
        params = self.Input(data=request.query_params)
        params.is_valid(raise_exception=True)
        # 404 to non-members (never a 403 that leaks the workspace)
        workspace = selectors.workspace_get(user=request.user, workspace_id=params.validated_data["workspace"])
        try:
            results, following = selectors.chat_search(
                workspace=workspace,
                query=params.validated_data["q"],
                cursor=params.validated_data.get("cursor"),
                limit=params.validated_data["limit"],
            )
        except cursors.BadCursor:
            raise ValidationError({"cursor": ["Not a cursor this API gave; use the previous page's next."]}) from None
        return Response(SearchOutput({"results": results, "next": cursors.page_url(request, following)}).data)
