from __future__ import annotations

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import search, selectors
from chats.api.serializers import SearchOutput, WorkspaceOutput
from chats.exports import export_filename, export_json, export_markdown
from chats.imports import ImportRejected, ImportTooLarge, chat_import
from mothership.infra import cursors
from mothership.infra.api import PayloadTooLarge, StrictCharField


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


FORMAT_REFUSED = "Give format=markdown (the branch shown) or format=json (every branch, to import again)."


class ChatExportApi(APIView):
    """A chat as a file to download (members; 404 for a chat in the trash): Markdown, the branch
    shown with a heading per message, or JSON, every message of every branch with its parent."""

    class ExportInput(serializers.Serializer):
        format = serializers.ChoiceField(
            choices=["markdown", "json"], error_messages={"required": FORMAT_REFUSED, "invalid_choice": FORMAT_REFUSED}
        )

    def perform_content_negotiation(self, request, force=False):
        # ?format= names the file here, not one of DRF's renderers; refusals stay JSON.
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    @extend_schema(
        parameters=[ExportInput],
        responses={
            (200, "text/markdown"): OpenApiTypes.STR,
            (200, "application/json"): OpenApiTypes.OBJECT,
        },
    )
    def get(self, request, chat_id):
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        query = self.ExportInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        tree = selectors.chat_tree(chat=chat)
        if query.validated_data["format"] == "markdown":
            body, content_type, extension = export_markdown(chat=chat, tree=tree), "text/markdown; charset=utf-8", "md"
        else:
            body, content_type, extension = export_json(chat=chat, tree=tree), "application/json", "json"
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = content_disposition_header(True, export_filename(chat.title, extension))
        return response


class WorkspaceImportApi(APIView):
    """Import conversations into the workspace (members): this app's JSON export of a chat, or a
    ChatGPT ``conversations.json`` (one chat per conversation). The file is checked whole first: a
    bad one answers 400 saying what and where, and nothing of it is imported."""

    parser_classes = [MultiPartParser]

    class ImportInput(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True, use_url=False)

    class ImportOutput(serializers.Serializer):
        chats = serializers.ListField(child=serializers.UUIDField(), source="chat_ids")
        notes = serializers.ListField(child=serializers.CharField(), help_text="What was left out, in words.")

    @extend_schema(
        request={"multipart/form-data": ImportInput},
        responses={
            201: ImportOutput,
            413: OpenApiResponse(description="Larger than MOTHERSHIP_IMPORT_MAX_BYTES."),
        },
    )
    def post(self, request, workspace_id):
        workspace = selectors.workspace_get(user=request.user, workspace_id=workspace_id)
        payload = self.ImportInput(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            record = chat_import(workspace=workspace, user=request.user, file=payload.validated_data["file"])
        except ImportTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from None
        except ImportRejected as exc:
            raise ParseError(str(exc)) from None
        return Response(self.ImportOutput(record).data, status=status.HTTP_201_CREATED)
