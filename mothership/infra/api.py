"""API plumbing shared by every app: errors always carry a readable ``detail``."""

from __future__ import annotations

import redis
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from mothership.infra import metrics


class Conflict(APIException):
    """409. A body's null fields stay null (``{"active_stream_id": null}`` when no turn is live):
    DRF makes every value of a dict detail a string, ``None`` the string "None"."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict."
    default_code = "conflict"

    def __init__(self, detail=None, code=None):
        super().__init__(detail, code)
        if isinstance(detail, dict):
            self.detail = {key: None if value is None else self.detail[key] for key, value in detail.items()}


class PaymentRequired(APIException):
    """402: a budget has no room for what was asked (its body says which, and by how much)."""

    status_code = status.HTTP_402_PAYMENT_REQUIRED
    default_detail = "Over budget."
    default_code = "budget_exceeded"


class Gone(APIException):
    """410: it existed for the caller, and is gone for good (a chat past its time in the trash)."""

    status_code = status.HTTP_410_GONE
    default_detail = "Gone."
    default_code = "gone"


class PayloadTooLarge(APIException):
    """413: an upload larger than the limit its endpoint names."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The file is too large."
    default_code = "too_large"


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)


class TooManyRequests(APIException):
    """429 for a limit that is not a rate (the turns a user may run at once): ``Retry-After`` says
    when to look again."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "throttled"

    def __init__(self, detail: str, *, wait: int):
        super().__init__(detail)
        self.wait = wait


DATABASE_UNAVAILABLE = "The database is unavailable or has no free connection; try again shortly."


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, (OperationalError, InterfaceError)):
        metrics.database_error("web")
        # A database that refuses a connection (down, "too many clients", the pool's time-out).
        return Response({"detail": DATABASE_UNAVAILABLE}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, redis.RedisError):
        metrics.redis_error("web")
        # Locks and logs refuse to guess: a write that needs Redis says so instead of a 500.
        return Response(
            {"detail": "The stream store (Redis) is unavailable; try again shortly."}, status=status.HTTP_503_SERVICE_UNAVAILABLE
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        # Clients get one readable sentence plus the field errors.
        response.data = {"detail": _first_message(exc.detail), "errors": exc.detail}
    return response


class _StringOnly:
    """Refuse anything but a JSON string instead of quietly converting numbers and booleans."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(_StringOnly, serializers.CharField):
    default_error_messages = {"invalid": "Must be a string."}


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false, never "yes", 1 or "true"."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictUUIDField(_StringOnly, serializers.UUIDField):
    """DRF's UUIDField would also turn an integer into a UUID."""

    default_error_messages = {"invalid": "Must be a valid UUID string."}


class DatabaseUnavailableMiddleware:
    """The same 503 for the pages (the API answers through ``exception_handler``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            metrics.database_error("web")
            return HttpResponse(DATABASE_UNAVAILABLE, status=503, content_type="text/plain; charset=utf-8")
        return None
