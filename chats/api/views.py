from __future__ import annotations

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import search, selectors, services
from chats.api.serializers import MemberOutput, SearchOutput, ShareOutput, WorkspaceOutput
from chats.exports import export_filename, export_json, export_markdown
from chats.imports import ImportRejected, ImportTooLarge, chat_import
from chats.models import Membership
from mothership.infra import cursors
from mothership.infra.api import Conflict, PayloadTooLarge, StrictCharField
from mothership.infra.throttles import user_rate_check


class WorkspaceListApi(APIView):
    @extend_schema(responses=WorkspaceOutput(many=True))
    def get(self, request):
        return Response(WorkspaceOutput(selectors.workspace_list(user=request.user), many=True).data)


def _strict(serializer) -> None:
    """Unknown fields are refused by name (a typo must not pass as "nothing to change")."""
    unknown = sorted(set(serializer.initial_data) - set(serializer.fields))
    if unknown:
        names = ", ".join(serializer.fields)
        raise serializers.ValidationError({name: [f"Unknown field; use {names}."] for name in unknown})


MEMBERS_CONFLICT = OpenApiResponse(
    description="The change would leave the workspace without an owner, or the person is already a member."
)
MEMBERS_REFUSED = OpenApiResponse(description="A member who is not an owner: " + selectors.MEMBERS_REFUSED)


class WorkspaceMemberListApi(APIView):
    """A workspace's members and their roles (any member may read them); owners add people, by
    username or e-mail."""

    class AddInput(serializers.Serializer):
        user = StrictCharField(max_length=254, trim_whitespace=True, help_text="Their username, or their e-mail.")
        role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)

        def validate(self, attrs):
            _strict(self)
            return attrs

    @extend_schema(responses=MemberOutput(many=True))
    def get(self, request, workspace_id):
        workspace = selectors.workspace_get(user=request.user, workspace_id=workspace_id)  # 404 for non-members
        return Response(MemberOutput(selectors.workspace_members(workspace=workspace), many=True).data)

    @extend_schema(request=AddInput, responses={201: MemberOutput, 403: MEMBERS_REFUSED, 409: MEMBERS_CONFLICT})
    def post(self, request, workspace_id):
        workspace = selectors.workspace_get_for_owner(user=request.user, workspace_id=workspace_id)
        payload = self.AddInput(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            user = selectors.user_find(identifier=payload.validated_data["user"])
        except selectors.UserNotFound as exc:
            raise ValidationError({"user": [str(exc)]}) from None
        try:
            membership = services.member_invite(workspace=workspace, user=user, role=payload.validated_data["role"])
        except services.MembershipRefused as exc:
            raise Conflict(str(exc)) from None
        return Response(MemberOutput(membership).data, status=status.HTTP_201_CREATED)


class WorkspaceMemberApi(APIView):
    """One member: owners change their role or take them out (their access goes at once, open
    sockets included). A workspace always keeps an owner (409)."""

    class RoleInput(serializers.Serializer):
        role = serializers.ChoiceField(choices=Membership.Role.choices)

        def validate(self, attrs):
            _strict(self)
            return attrs

    @extend_schema(request=RoleInput, responses={200: MemberOutput, 403: MEMBERS_REFUSED, 409: MEMBERS_CONFLICT})
    def patch(self, request, workspace_id, user_id):
        workspace = selectors.workspace_get_for_owner(user=request.user, workspace_id=workspace_id)
        membership = selectors.member_get(workspace=workspace, user_id=user_id)
        payload = self.RoleInput(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            services.membership_set_role(membership=membership, role=payload.validated_data["role"])
        except services.MembershipRefused as exc:
            raise Conflict(str(exc)) from None
        return Response(MemberOutput(membership).data)

    @extend_schema(request=None, responses={204: None, 403: MEMBERS_REFUSED, 409: MEMBERS_CONFLICT})
    def delete(self, request, workspace_id, user_id):
        workspace = selectors.workspace_get_for_owner(user=request.user, workspace_id=workspace_id)
        membership = selectors.member_get(workspace=workspace, user_id=user_id)
        try:
            services.membership_remove(membership=membership)
        except services.MembershipRefused as exc:
            raise Conflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


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
        user_rate_check(scope="import", user=request.user)  # MOTHERSHIP_IMPORT_RATE: 429 past it
        payload = self.ImportInput(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            record = chat_import(workspace=workspace, user=request.user, file=payload.validated_data["file"])
        except ImportTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from None
        except ImportRejected as exc:
            raise ParseError(str(exc)) from None
        return Response(self.ImportOutput(record).data, status=status.HTTP_201_CREATED)


class ChatShareApi(APIView):
    """Share links: public, read-only snapshots of the conversation as it is shown now (``/s/<token>``).

    Any member may share a chat; each ``POST`` makes a new link to a new snapshot (the older links
    stay, listed on the chat, until revoked), so later messages, edits or another branch never
    change what a link shows. A member has at most ``MOTHERSHIP_SHARES_PER_USER`` active links
    (``409`` past it) and makes them at ``MOTHERSHIP_SHARE_RATE`` (``429``). A link is revoked by
    the member who made it, the chat's creator or an owner of the workspace; a revoked link
    answers 404 for good. While the chat is in the trash its links answer 404, and work again when
    it is restored; purging the chat deletes them.
    """

    class DeleteInput(serializers.Serializer):
        token = StrictCharField(
            required=False, allow_blank=True, max_length=64, help_text="Revoke this link only (else every link of the chat)."
        )

        def validate(self, attrs):
            # ``?token=`` must never fall through to "every link" (DRF drops a blank optional field).
            if "token" in self.initial_data and not attrs.get("token"):
                raise serializers.ValidationError({"token": ["Give a link's token, or leave token out to revoke every link."]})
            return attrs

    @extend_schema(responses=ShareOutput(many=True))
    def get(self, request, chat_id):
        """The chat's active share links, newest first."""
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        shares = selectors.chat_shares_active(chat=chat)
        return Response(ShareOutput(shares, many=True, context=self._context(request, chat)).data)

    @extend_schema(
        request=None,
        responses={
            200: ShareOutput,
            409: OpenApiResponse(description="The caller has MOTHERSHIP_SHARES_PER_USER active links; revoke one first."),
        },
    )
    def post(self, request, chat_id):
        """A new share link to a snapshot of the conversation as it is shown now: ``{"url", …}``."""
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        user_rate_check(scope="share", user=request.user)  # MOTHERSHIP_SHARE_RATE: 429 past it
        try:
            share = services.share_create(chat=chat, created_by=request.user)
        except services.ShareLimitReached as exc:
            raise Conflict(str(exc)) from None
        return Response(ShareOutput(share, context=self._context(request, chat)).data)

    @extend_schema(
        parameters=[DeleteInput],
        responses={
            200: inline_serializer("ShareRevokeOutput", {"revoked": serializers.IntegerField(help_text="Links revoked now.")}),
            403: OpenApiResponse(description=selectors.SHARE_REVOKE_REFUSED),
        },
    )
    def delete(self, request, chat_id):
        """Revoke the chat's share links (``?token=``: that one): they answer 404 from now on. Without
        a token, every active link of the chat, all or none: a member who may not revoke some of
        them (made by another member, and neither the chat's creator nor an owner) gets 403 and
        nothing is revoked."""
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        params = self.DeleteInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        shares = selectors.shares_for_revoke(user=request.user, chat=chat, token=params.validated_data.get("token"))
        return Response({"revoked": services.shares_revoke(shares=shares)})

    @staticmethod
    def _context(request, chat) -> dict:
        manages = selectors.user_may_manage(user=request.user, chat=chat)
        return {
            "request": request,
            "may_revoke": lambda share: selectors.user_may_revoke_share(
                user=request.user, share=share, chat=chat, manages=manages
            ),
        }
