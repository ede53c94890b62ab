"""The OpenAPI schema documents every status the API answers, errors included.

drf-spectacular documents the success response a view declares; this post-processing hook adds
the errors every view shares, each with the ``{"detail", "errors"}`` body of
``mothership.infra.api.exception_handler``:

- 400 for an operation that takes a body or parameters (validation, malformed JSON);
- 401 / 403 for one that needs a login (no or a bad credential);
- 404 for one that needs a login and names an object (an id in the path, a workspace in the
  query or the body: unknown, or the caller is not a member);
- 413 for one that takes a body (larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE``);
- 429 for the sign-in (its rate per address, and a username's lockout after failed attempts);
- 503 for every one (the database or Redis unavailable).

A status only some views answer (409 on a send) is declared on the view itself, and gets the
same error body here.
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "One readable sentence."},
        "errors": {"type": "object", "description": "Field errors, on a 400 from validation.", "additionalProperties": True},
    },
    "required": ["detail"],
}

_DESCRIPTIONS = {
    "400": "The body or a parameter is invalid.",
    "401": "No credentials, or bad ones.",
    "403": "Not allowed (not logged in, or a bad credential or CSRF token).",
    "404": "No such object, or the caller is not a member of its workspace.",
    "413": "The body is larger than the server accepts.",
    "429": "Too many attempts; the Retry-After header says when to try again.",
    "503": "The database or Redis is unavailable; try again shortly.",
}


# Operations with a limit that answers 429: sign-ins (mothership.infra.login_limits), and the
# per-user rates and the cap on turns at once (mothership.infra.throttles, streams.services.start).
LIMITED_OPERATIONS = {
    ("/api/auth/token", "post"),
    ("/api/mothership/chats", "post"),
    ("/api/mothership/chats/{chat_id}/messages", "post"),
    ("/api/mothership/chats/{chat_id}/warming", "put"),
    ("/api/mothership/chats/{chat_id}/share", "post"),
}


def _statuses(path: str, method: str, operation: dict) -> list[str]:
    body = "requestBody" in operation
    login = {} not in operation.get("security", [{}])
    statuses = []
    if body or operation.get("parameters"):
        statuses.append("400")
    if login:
        statuses += ["401", "403"]
    if login and (body or operation.get("parameters")):
        statuses.append("404")
    if body:
        statuses.append("413")
    if (path, method) in LIMITED_OPERATIONS:
        statuses.append("429")
    return [*statuses, "503"]


def add_error_responses(result, generator, request, public):
    """SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]: the shared errors on every operation."""
    result.setdefault("components", {}).setdefault("schemas", {}).setdefault("Error", ERROR_SCHEMA)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in _statuses(path, method, operation):
                responses.setdefault(status, {"description": _DESCRIPTIONS[status]})
            for status, response in responses.items():
                if status[0] in "45":
                    response.setdefault("content", error)
    return result
