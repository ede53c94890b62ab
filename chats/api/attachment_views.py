"""Attachments over HTTP: upload to a chat, open (members only), remove before sending."""

from __future__ import annotations

from django.http import FileResponse, Http404
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import selectors
from chats.api.serializers import AttachmentOutput, attachment_json
from chats.attachments import AttachmentRefused, attachment_discard, attachment_upload
from chats.attachments.selectors import attachment_get
from chats.attachments.storage import StorageUnavailable, open_file
from mothership.infra.throttles import user_rate_check

NO_SUCH_FILE = "No such file in this conversation."


def refused(exc: AttachmentRefused) -> Response:
    return Response({"detail": exc.detail, "code": exc.code}, status=exc.status)


class ChatAttachmentUploadApi(APIView):
    """Upload one file to a chat (members), to name in a send: ``{"content", "attachments": [ids]}``.

    Its type is found from its bytes: PNG, JPEG, GIF and WebP images (re-encoded without their
    metadata, with a thumbnail), PDF, and UTF-8 text. The body is measured as it arrives and
    stored in chunks, never held whole in memory.
    """

    parser_classes = [MultiPartParser]

    class UploadInput(serializers.Serializer):
        file = serializers.FileField()

    @extend_schema(
        request={"multipart/form-data": UploadInput},
        responses={
            201: AttachmentOutput,
            400: OpenApiResponse(description="No file, an empty one, or an image or PDF that cannot be read."),
            413: OpenApiResponse(description="Larger than MOTHERSHIP_ATTACHMENT_MAX_BYTES, or past the uploader's quota."),
            415: OpenApiResponse(description="Not a supported type (by its bytes, whatever its name)."),
            429: OpenApiResponse(description="Past MOTHERSHIP_UPLOAD_RATE."),
        },
    )
    def post(self, request, chat_id):
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        user_rate_check(scope="upload", user=request.user)
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError({"file": ["Send the file as the multipart field named file."]})
        try:
            attachment = attachment_upload(chat=chat, user=request.user, file=upload)
        except AttachmentRefused as exc:
            return refused(exc)
        return Response(attachment_json(attachment), status=status.HTTP_201_CREATED)


def _file_response(attachment, *, key: str, content_type: str, inline: bool, name: str):
    try:
        opened = open_file(key)
    except FileNotFoundError:
        raise Http404(NO_SUCH_FILE) from None
    except StorageUnavailable as exc:
        return Response({"detail": str(exc), "code": "storage_unavailable"}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response = FileResponse(opened, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(not inline, name)
    response["X-Content-Type-Options"] = "nosniff"
    # Opened on its own, a file is never a page: no scripts, no plugins, no frames, no forms.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    response._csp_exempt = True  # the header above is the whole policy (django-csp would replace it)
    return response


class _FileApi(APIView):
    def perform_content_negotiation(self, request, force=False):
        # A file answers whatever the client accepts (an <img> asks for image/*); refusals stay JSON.
        renderer = JSONRenderer()
        return renderer, renderer.media_type


class ChatAttachmentApi(_FileApi):
    """``GET``: the file (members; an image inline, anything else as a download, never as a page).
    ``DELETE``: remove an upload before it is sent (its uploader)."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, chat_id, attachment_id):
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        attachment = attachment_get(chat=chat, attachment_id=attachment_id, user=request.user)
        if attachment is None:
            raise Http404(NO_SUCH_FILE)
        image = attachment.kind == "image"
        content_type = (
            attachment.content_type if image or attachment.kind == "pdf" else f"{attachment.content_type}; charset=utf-8"
        )
        return _file_response(attachment, key=attachment.key, content_type=content_type, inline=image, name=attachment.name)

    @extend_schema(responses={204: None, 409: OpenApiResponse(description="Already sent with a message: it stays.")})
    def delete(self, request, chat_id, attachment_id):
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        attachment = attachment_get(chat=chat, attachment_id=attachment_id, user=request.user)
        if attachment is None or (attachment.sent_at is None and attachment.uploaded_by_id != request.user.pk):
            raise Http404(NO_SUCH_FILE)
        try:
            attachment_discard(attachment=attachment)
        except AttachmentRefused as exc:
            return refused(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChatAttachmentThumbnailApi(_FileApi):
    """An image's thumbnail (WebP, at most 320 px a side); 404 for any other file."""

    @extend_schema(responses={(200, "image/webp"): OpenApiTypes.BINARY})
    def get(self, request, chat_id, attachment_id):
        chat = selectors.chat_get_for_member(user=request.user, chat_id=chat_id)
        attachment = attachment_get(chat=chat, attachment_id=attachment_id, user=request.user)
        if attachment is None or not attachment.thumbnail_key:
            raise Http404(NO_SUCH_FILE)
        stem = attachment.name.rsplit(".", 1)[0] or "image"
        return _file_response(
            attachment, key=attachment.thumbnail_key, content_type="image/webp", inline=True, name=f"{stem}.webp"
        )
