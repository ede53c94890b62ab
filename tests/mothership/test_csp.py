"""Every page answers with a strict Content-Security-Policy: scripts, styles and sockets from this
site only, no inline script or style, never framed. (The browser tests fail on any violation the
policy reports while they use every feature: ``tests/browser/conftest.py``.)"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/admin/login/", "/healthz", "/api/mothership/models"])
def test_every_answer_carries_the_policy(client, user, path):
    client.force_login(user)

    policy = _policy(client.get(path))

    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    assert not any("unsafe" in value for values in policy.values() for value in values)


def test_the_chat_page_has_no_inline_script_or_style(client, user, chat):
    client.force_login(user)

    html = client.get(f"/chats/{chat.id}/").content.decode()

    scripts = html.split("<script")[1:]
    assert scripts and all(
        s.split(">", 1)[0].strip().startswith(('type="module" src=', "id=", 'type="application/json"')) for s in scripts
    )
    assert " style=" not in html and "<style" not in html
