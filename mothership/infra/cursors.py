"""Keyset pagination: an opaque cursor names the last row of a page by its ordering columns, and
the next page is what sorts after it (one index range scan, however deep the page; a row
inserted or moved meanwhile never shifts the rest by one)."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from django.db.models import Q
from rest_framework import serializers


class BadCursor(ValueError):
    pass


def encode(values: list) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else str(v) for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(cursor: str, count: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except ValueError:
        raise BadCursor(cursor) from None
    if not (isinstance(values, list) and len(values) == count and all(isinstance(v, str) for v in values)):
        raise BadCursor(cursor)
    return values


def after(fields: list[str], values: list, *, descending: bool) -> Q:
    """Rows that sort after ``values`` on ``fields`` (all descending, or all ascending)."""
    op = "lt" if descending else "gt"
    condition = Q(**{f"{fields[-1]}__{op}": values[-1]})
    for field, value in zip(reversed(fields[:-1]), reversed(values[:-1]), strict=True):
        condition = Q(**{f"{field}__{op}": value}) | (Q(**{field: value}) & condition)
    return condition


class PageInput(serializers.Serializer):
    """``?cursor=`` (from the previous page's ``Link: rel="next"``) and ``?limit=``."""

    cursor = serializers.CharField(required=False, max_length=400)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500)


def page_url(request, cursor: str | None) -> str | None:
    """This request's URL with ``cursor=…`` (None when there is no next page)."""
    if cursor is None:
        return None
    query = request.query_params.copy()
    query["cursor"] = cursor
    return f"{request.build_absolute_uri(request.path)}?{query.urlencode()}"


def link_header(request, cursor: str | None) -> dict:
    """``Link: <this URL with cursor=…>; rel="next"`` when there is a next page."""
    url = page_url(request, cursor)
    return {} if url is None else {"Link": f'<{url}>; rel="next"'}
