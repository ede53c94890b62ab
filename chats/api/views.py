from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import selectors
from chats.api.serializers import WorkspaceOutput


class WorkspaceListApi(APIView):
    @extend_schema(responses=WorkspaceOutput(many=True))
    def get(self, request):
        return Response(WorkspaceOutput(selectors.workspace_list(user=request.user), many=True).data)
