"""A form body past Django's limits is a 413 (or a 400) and one warning line, not a traceback.

Django raises ``RequestDataTooBig`` (past ``DATA_UPLOAD_MAX_MEMORY_SIZE``) or ``TooManyFieldsSent``
/ ``TooManyFilesSent`` where a form body is first read (the CSRF check, a view), answers 400 and
logs the error with its whole traceback at ERROR: anyone could write a traceback to the log with
each 50 MB post. Here the form body is read first, before any other middleware: a body past the
limits is answered 413 (too large) or 400 (too many fields or files) with one warning naming the
path and the size. API bodies (JSON) are read by DRF, whose handler answers 413 already
(``mothership.infra.api``).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError

logger = logging.getLogger(__name__)

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def _answer(request, detail: str, status: int) -> HttpResponse:
    """The API's shape (``{"detail": …}``) under ``/api/``, a line of text elsewhere."""
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": detail}, status=status)
    else:
        response = HttpResponse(detail + "\n", status=status, content_type="text/plain; charset=utf-8")
    response._has_been_logged = True  # its line is ours: Django's "Request Entity Too Large" would be a second
    return response


def RequestBodyLimitMiddleware(get_response):  # noqa: N802 (Django's middleware factory)
    def middleware(request):
        if request.method == "POST" and request.content_type in _FORMS:  # Django parses no other method's form
            try:
                request.POST  # noqa: B018 (reads and parses the body once; Django keeps it for the view)
            except RequestDataTooBig:
                logger.warning(
                    "%s %s: body of %s bytes refused (larger than DATA_UPLOAD_MAX_MEMORY_SIZE): 413",
                    request.method,
                    request.path,
                    request.META.get("CONTENT_LENGTH") or "?",
                )
                return _answer(request, f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.", 413)
            except (TooManyFieldsSent, TooManyFilesSent, MultiPartParserError) as exc:
                logger.warning("%s %s: %s: 400", request.method, request.path, exc)
                return _answer(request, str(exc), 400)
            except OSError:
                pass  # the client went away mid-body (UnreadablePostError): the view sees an empty form, as before
        return get_response(request)

    return middleware
