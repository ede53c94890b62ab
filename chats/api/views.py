from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import selectors, services
from chats.api.serializers import ShareOutput, WorkspaceOutput
from mothership.infra.api import Conflict, StrictCharField
from mothership.infra.throttles import user_rate_check


class WorkspaceListApi(APIView):
    @extend_schema(responses=WorkspaceOutput(many=True))
    def get(self, request):
        return Response(WorkspaceOutput(selectors.workspace_list(user=request.user), many=True).data)


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
            200: serializers.DictField(child=serializers.IntegerField(), help_text='{"revoked": <links revoked now>}'),
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
