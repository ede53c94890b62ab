"""Share links: ``POST /api/mothership/chats/<id>/share`` → ``{"url"}``, a public, read-only snapshot
of the conversation as it is shown now (``/s/<token>``, no login); ``DELETE`` → the link answers
404. Members only; a chat in the trash shares nothing; a member has a limited number of links."""

from __future__ import annotations

import datetime
from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from chats.models import Chat, ChatShare, Membership, Message
from chats.selectors import SHARE_REVOKE_REFUSED, chat_branch_messages
from mothership.infra.throttles import user_rate_reset
from mothership.services import trash_purge
from tests import factories

pytestmark = pytest.mark.django_db

REPLY = """## Findings

The **lunar** samples, in short:

- basalt
- breccia

| site | kg |
|:-----|---:|
| A11  | 21.5 |

```python
print("moon")
```

[a source](https://example.org/apollo) and [the admin](/admin/)
"""


def _share_path(url: str) -> str:
    assert url.startswith("http://testserver/s/"), url
    return url.removeprefix("http://testserver")


def _member(workspace, role=Membership.Role.MEMBER):
    person = factories.MembershipFactory(workspace=workspace, role=role).user
    client = APIClient()
    client.force_authenticate(person)
    return person, client


def _conversation(chat) -> tuple[Message, Message]:
    question = factories.MessageFactory(chat=chat, role="user", content="What did **Apollo 11** bring back?")
    answer = factories.MessageFactory(chat=chat, role="assistant", content=REPLY, parent=question)
    return question, answer


class _Elements(HTMLParser):
    """Every start tag with its attributes, as a browser would build them."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_a_share_link_shows_the_conversation_rendered_without_a_login(api, chat):
    # given a conversation
    _conversation(chat)

    # when a member shares it
    answer = api.post(f"/api/mothership/chats/{chat.id}/share")

    # then the link opens for anyone, with the replies rendered as Markdown
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) >= {"url", "token", "created_at"} and body["can_revoke"] is True
    page = Client().get(_share_path(body["url"]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<title>First chat · Mothership</title>" in html
    assert "What did **Apollo 11** bring back?" in html  # the question as written, as on the chat page
    assert "<h2>Findings</h2>" in html and "<strong>lunar</strong>" in html and "<li>basalt</li>" in html
    assert '<td class="md-align-right">21.5</td>' in html
    assert '<pre tabindex="0" role="group" aria-label="Code: python"><code>print("moon")\n</code></pre>' in html
    assert '<a href="https://example.org/apollo" rel="nofollow noopener noreferrer">a source</a>' in html
    assert 'href="/admin/"' not in html  # no link into the app from what a model wrote


def test_the_page_is_not_indexed_not_cached_and_sends_no_referrer(api, chat):
    _conversation(chat)
    url = api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"]

    page = Client().get(_share_path(url))

    assert '<meta name="robots" content="noindex, nofollow">' in page.content.decode()
    assert page.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    cache = page.headers["Cache-Control"]
    assert "private" in cache and "no-store" in cache
    # the same for the answer to a link that no longer works
    gone = Client().get("/s/not-a-token")
    assert gone.status_code == 404 and gone.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert "no-store" in gone.headers["Cache-Control"]
    assert '<meta name="robots" content="noindex, nofollow">' in gone.content.decode()


def test_the_page_names_no_internal_id_and_links_only_home(api, user, chat):
    question, answer = _conversation(chat)
    url = api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"]

    viewer = Client()
    viewer.force_login(user)  # even its own member sees no account controls or ids there
    html = viewer.get(_share_path(url)).content.decode()

    for internal in (chat.id, chat.workspace_id, question.id, answer.id):
        assert str(internal) not in html and internal.hex not in html, internal
    assert user.username not in html
    # (the skip link goes to the page's own main part: "#main")
    links = [attrs["href"] for tag, attrs in _Elements(html).tags if tag == "a" and attrs["href"] != "#main"]
    assert links == ["/", "https://example.org/apollo"]
    assert "logout" not in html and "csrfmiddlewaretoken" not in html


@pytest.mark.parametrize(
    "content",
    [
        "<script>alert('owned')</script>",
        '<img src=x onerror="alert(1)">',
        "[click](javascript:alert(1))",
        '<a href="javascript:alert(1)">x</a>',
        "![pixel](https://tracker.example/p.gif)",
        '<iframe src="https://evil.example"></iframe>',
        '<div style="position:fixed">over</div>',
    ],
)
@pytest.mark.parametrize("role", ["user", "assistant"])
def test_html_in_messages_is_shown_as_text_never_run(api, chat, content, role):
    factories.MessageFactory(chat=chat, role=role, content=content)
    url = api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"]

    html = Client().get(_share_path(url)).content.decode()

    tags = _Elements(html).tags
    assert not [t for t, _ in tags if t in ("script", "img", "iframe", "style", "object", "embed")]
    assert not [(t, a) for t, a in tags for name in a if name.startswith("on") or name == "style"]
    assert not [a for t, a in tags if t == "a" and not a["href"].startswith(("/", "https://", "#main"))]
    assert "javascript:" not in " ".join(str(a) for _, a in tags)


def test_the_snapshot_is_the_conversation_as_it_was_later_messages_and_edits_do_not_appear(api, chat):
    question, answer = _conversation(chat)
    url = api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"]

    # when the conversation goes on, the title changes and the reply is edited
    factories.MessageFactory(chat=chat, role="user", content="A later question", parent=answer)
    Message.objects.filter(pk=answer.pk).update(content="rewritten")
    Chat.objects.filter(pk=chat.pk).update(title="Renamed")

    # then the link shows what was there when it was made
    html = Client().get(_share_path(url)).content.decode()
    assert "A later question" not in html and "rewritten" not in html and "Renamed" not in html
    assert "<h2>Findings</h2>" in html and "First chat" in html
    # and a new share shows the conversation as it is now
    newer = Client().get(_share_path(api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"])).content.decode()
    assert "A later question" in newer and "Renamed" in newer


def test_the_snapshot_is_the_branch_shown_not_its_siblings(api, chat):
    # given an edited question: two versions, each answered, the second shown
    first = factories.MessageFactory(chat=chat, role="user", content="Question as first asked", parent=None)
    factories.MessageFactory(chat=chat, role="assistant", content="First answer", parent=first)
    second = factories.MessageFactory(chat=chat, role="user", content="Question as edited", parent=None)
    second_answer = factories.MessageFactory(chat=chat, role="assistant", content="Second answer", parent=second)
    Chat.objects.filter(pk=chat.pk).update(leaf_id=second_answer.pk)

    url = api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"]

    html = Client().get(_share_path(url)).content.decode()
    assert "Question as edited" in html and "Second answer" in html
    assert "Question as first asked" not in html and "First answer" not in html


def test_the_shown_branch_is_the_path_from_the_leaf_to_the_root(chat):
    root = factories.MessageFactory(chat=chat, content="root")
    old = factories.MessageFactory(chat=chat, role="assistant", content="old reply", parent=root)
    regenerated = factories.MessageFactory(chat=chat, role="assistant", content="new reply", parent=root)
    follow_up = factories.MessageFactory(chat=chat, content="follow-up", parent=old)

    # no leaf chosen: the newest message's branch
    assert [m.content for m in chat_branch_messages(chat=chat)] == ["root", "old reply", "follow-up"]
    chat.leaf_id = regenerated.pk
    assert [m.content for m in chat_branch_messages(chat=chat)] == ["root", "new reply"]
    chat.leaf_id = follow_up.pk
    assert [m.content for m in chat_branch_messages(chat=chat)] == ["root", "old reply", "follow-up"]


def test_the_snapshot_keeps_no_ids_usage_or_tool_internals(api, chat):
    question = factories.MessageFactory(chat=chat, role="user", content="What time is it?")
    factories.MessageFactory(
        chat=chat,
        role="assistant",
        parent=question,
        content="Noon.",
        output_tokens=42,
        tool_calls=[
            {"callId": "call-secret", "tool": "time.now", "arguments": {"tz": "secret-arg"}, "status": "ok", "content": "12:00"}
        ],
    )
    api.post(f"/api/mothership/chats/{chat.id}/share")

    share = ChatShare.objects.get()
    assert [sorted(m) for m in share.messages] == [["content", "created_at", "role", "status", "tool_calls"]] * 2
    assert share.messages[1]["tool_calls"] == [{"tool": "time.now", "status": "ok"}]
    html = Client().get(f"/s/{share.token}").content.decode()
    assert "time.now" in html and "call-secret" not in html and "secret-arg" not in html


def test_revoke_makes_the_link_answer_404_and_the_list_forgets_it(api, chat):
    _conversation(chat)
    kept = api.post(f"/api/mothership/chats/{chat.id}/share").json()
    doomed = api.post(f"/api/mothership/chats/{chat.id}/share").json()
    assert [s["token"] for s in api.get(f"/api/mothership/chats/{chat.id}/share").json()] == [doomed["token"], kept["token"]]

    # one link, by its token
    answer = api.delete(f"/api/mothership/chats/{chat.id}/share?token={doomed['token']}")
    assert (answer.status_code, answer.json()) == (200, {"revoked": 1})
    assert Client().get(_share_path(doomed["url"])).status_code == 404
    assert Client().get(_share_path(kept["url"])).status_code == 200
    assert [s["token"] for s in api.get(f"/api/mothership/chats/{chat.id}/share").json()] == [kept["token"]]
    assert api.delete(f"/api/mothership/chats/{chat.id}/share?token={doomed['token']}").status_code == 404

    # every link of the chat (the contract's DELETE)
    assert api.delete(f"/api/mothership/chats/{chat.id}/share").json() == {"revoked": 1}
    missing = Client().get(_share_path(kept["url"]))
    assert missing.status_code == 404 and "Link not found" in missing.content.decode()
    assert api.get(f"/api/mothership/chats/{chat.id}/share").json() == []
    assert api.delete(f"/api/mothership/chats/{chat.id}/share").json() == {"revoked": 0}


def test_any_member_shares_and_only_the_maker_the_creator_or_an_owner_revokes(workspace, user):
    # given bob's chat in alice's (the owner's) workspace, and carol and dave, members
    bob, bobs = _member(workspace)
    _carol, carol = _member(workspace)
    _dave, dave = _member(workspace)
    chat = factories.ChatFactory(workspace=workspace, created_by=bob, title="Bob's")
    factories.MessageFactory(chat=chat, content="hello")
    path = f"/api/mothership/chats/{chat.id}/share"

    carols = carol.post(path).json()
    assert carols["can_revoke"] is True
    assert [s["can_revoke"] for s in dave.get(path).json()] == [False]

    # dave may revoke neither that link nor every link
    refused = dave.delete(f"{path}?token={carols['token']}")
    assert (refused.status_code, refused.json()["detail"]) == (403, SHARE_REVOKE_REFUSED)
    refused_all = dave.delete(path)
    assert refused_all.status_code == 403 and "1 of this chat's links were made by other members" in refused_all.json()["detail"]
    assert Client().get(_share_path(carols["url"])).status_code == 200  # all or none: nothing revoked

    # dave's own link is his to revoke; the chat's creator and the owner may revoke any
    daves = dave.post(path).json()
    assert dave.delete(f"{path}?token={daves['token']}").json() == {"revoked": 1}
    assert bobs.delete(f"{path}?token={carols['token']}").json() == {"revoked": 1}
    owner = APIClient()
    owner.force_authenticate(user)
    carol.post(path)
    assert [s["can_revoke"] for s in owner.get(path).json()] == [True]
    assert owner.delete(path).json() == {"revoked": 1}


def test_non_members_get_404_and_make_nothing(chat):
    _conversation(chat)
    stranger = APIClient()
    stranger.force_authenticate(factories.UserFactory())
    path = f"/api/mothership/chats/{chat.id}/share"

    assert stranger.post(path).status_code == 404
    assert stranger.get(path).status_code == 404
    assert stranger.delete(path).status_code == 404
    assert not ChatShare.objects.exists()
    assert APIClient().post(path).status_code in (401, 403)  # no login at all
    assert not ChatShare.objects.exists()


def test_a_chat_in_the_trash_shares_nothing_its_links_answer_404_and_come_back_on_restore(api, chat):
    _conversation(chat)
    url = api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"]
    assert api.delete(f"/api/mothership/chats/{chat.id}").status_code == 204

    assert Client().get(_share_path(url)).status_code == 404
    assert api.post(f"/api/mothership/chats/{chat.id}/share").status_code == 404
    assert api.get(f"/api/mothership/chats/{chat.id}/share").status_code == 404
    assert api.delete(f"/api/mothership/chats/{chat.id}/share").status_code == 404

    assert api.post(f"/api/mothership/chats/{chat.id}/restore").status_code == 200
    assert Client().get(_share_path(url)).status_code == 200


def test_purging_the_chat_deletes_its_links(api, chat):
    api.post(f"/api/mothership/chats/{chat.id}/share")
    Chat.objects.filter(pk=chat.pk).update(deleted_at=timezone.now() - datetime.timedelta(days=365))

    trash_purge()

    assert not ChatShare.objects.exists()


def test_a_member_has_a_limited_number_of_active_links_a_clear_409(api, chat, settings):
    settings.MOTHERSHIP_SHARES_PER_USER = 2
    path = f"/api/mothership/chats/{chat.id}/share"
    first = api.post(path).json()
    assert api.post(path).status_code == 200

    refused = api.post(path)

    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "You have 2 active share links, the most allowed (MOTHERSHIP_SHARES_PER_USER); revoke one to share again."
    )
    assert ChatShare.objects.count() == 2
    # a revoked link no longer counts
    api.delete(f"{path}?token={first['token']}")
    assert api.post(path).status_code == 200


def test_making_links_is_rate_limited_429_with_retry_after(api, user, chat, settings):
    settings.MOTHERSHIP_SHARE_RATE = "2/min"
    user_rate_reset(scope="share", user=user)
    path = f"/api/mothership/chats/{chat.id}/share"
    try:
        assert [api.post(path).status_code for _ in range(2)] == [200, 200]

        refused = api.post(path)

        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        assert refused.json()["detail"].startswith("Too many share links made.")
        assert ChatShare.objects.count() == 2
    finally:
        user_rate_reset(scope="share", user=user)


@pytest.mark.parametrize("query", ["token=", "token=" + "x" * 65, "token=nope", "token=%00", "token=a%2Fb"])
def test_bad_tokens_are_a_clear_4xx_and_revoke_nothing(api, chat, query):
    url = api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"]

    answer = api.delete(f"/api/mothership/chats/{chat.id}/share?{query}")

    assert answer.status_code in (400, 404) and answer.json()["detail"]
    assert Client().get(_share_path(url)).status_code == 200
    for path in ("/s/" + "x" * 500, "/s/%00", "/s/a%00b", "/s/..%2f", "/s/%C3%A9", "/s/a%20b"):
        assert Client().get(path).status_code == 404


def test_the_page_has_the_policy_and_no_script_or_inline_style(api, chat):
    _conversation(chat)
    url = api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"]

    page = Client().get(_share_path(url))

    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    html = page.content.decode()
    assert "<script" not in html and " style=" not in html and "<style" not in html


def test_the_chat_page_lists_its_active_links_with_copy_and_revoke(client, user, api, chat):
    _conversation(chat)
    kept = api.post(f"/api/mothership/chats/{chat.id}/share").json()
    revoked = api.post(f"/api/mothership/chats/{chat.id}/share").json()
    api.delete(f"/api/mothership/chats/{chat.id}/share?token={revoked['token']}")
    client.force_login(user)

    html = client.get(f"/chats/{chat.id}/").content.decode()

    assert 'id="share-chat"' in html
    assert f'href="{kept["url"]}"' in html and revoked["token"] not in html
    assert "share-copy" in html and "share-revoke" in html and "1 link<" in html


def test_a_share_link_is_in_the_admin_which_revokes_it(client, make_user, api, chat):
    _conversation(chat)
    url = api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"]
    share = ChatShare.objects.get()
    admin = make_user("root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client.force_login(admin)

    listing = client.get("/admin/chats/chatshare/").content.decode()
    assert "First chat" in listing and "alice" in listing

    answer = client.post("/admin/chats/chatshare/", {"action": "revoke", "_selected_action": [share.pk]}, follow=True)

    assert "Revoke: 1 revoked, 0 already revoked." in " ".join(str(m) for m in answer.context["messages"])
    assert Client().get(_share_path(url)).status_code == 404


def test_a_shared_question_shows_its_files_names_and_sizes_but_never_their_bytes_or_links(api, chat, turns_not_enqueued):
    upload = api.post(
        f"/api/mothership/chats/{chat.id}/attachments",
        {"file": SimpleUploadedFile("plan.txt", b"secret plan")},
        format="multipart",
    )
    api.post(f"/api/mothership/chats/{chat.id}/messages", {"content": "", "attachments": [upload.json()["id"]]}, format="json")
    page = Client().get(_share_path(api.post(f"/api/mothership/chats/{chat.id}/share").json()["url"])).content.decode()
    assert "plan.txt" in page and "11\xa0bytes" in page
    assert "secret plan" not in page and "/attachments/" not in page
