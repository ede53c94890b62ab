"""Malformed request bodies: a clear 4xx with a message on every JSON endpoint, never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from chats.models import Message
from streams.models import Stream

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000  # deeper than Python's JSON parser can follow


def _endpoints(chat) -> list[tuple[str, str]]:
    """Every endpoint that reads a JSON body (close takes none and never reads it)."""
    return [
        ("post", "/api/auth/token"),
        ("post", "/api/mothership/chats"),
        ("post", f"/api/mothership/chats/{chat.id}/messages"),
        ("post", f"/api/mothership/chats/{chat.id}/cancel"),
        ("put", f"/api/mothership/chats/{chat.id}/warming"),
    ]


@pytest.fixture
def client(user):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.parametrize("body", [DEEP, '{"content": ' + DEEP + "}"])
def test_a_body_nested_too_deeply_is_a_400_with_a_message(client, chat, body):
    for method, url in _endpoints(chat):
        response = getattr(client, method)(url, body, content_type="application/json")
        assert response.status_code == 400, url
        assert response.json()["detail"] == "JSON parse error - the body is nested too deeply.", url
    assert Message.objects.count() == 0 and Stream.objects.count() == 0


def test_a_body_over_the_size_limit_is_a_413_with_a_message(client, chat, settings):
    body = '{"content": "' + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + '"}'
    for method, url in _endpoints(chat):
        response = getattr(client, method)(url, body, content_type="application/json")
        assert response.status_code == 413, url
        assert response.json()["detail"] == f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.", url
    assert Message.objects.count() == 0


def test_an_unknown_api_url_is_a_json_404_and_an_unknown_page_stays_a_page(client):
    response = client.get("/api/mothership/nope")
    assert response.status_code == 404 and response.json() == {"detail": "No such API URL."}
    page = client.get("/no-such-page")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
