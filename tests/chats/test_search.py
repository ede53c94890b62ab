"""Full-text search over a workspace's chats (``GET /api/mothership/search``): titles and message
text, ranked, with escaped snippets, members only, the trash left out; the index follows every
write (a sealed reply, an edit, a rename, a purge) on PostgreSQL and on the embedded SQLite."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from rest_framework.test import APIClient

from chats import search
from chats.models import Chat, Message
from chats.services import chat_create, chat_mark_restored, chat_mark_trashed, chat_rename, chats_purge
from streams.services import stream_run, stream_start
from tests import factories

pytestmark = pytest.mark.django_db

URL = "/api/mothership/search"


def _search(api, workspace, q, **params):
    return api.get(URL, {"workspace": str(workspace.id), "q": q, **params})


def _found(api, workspace, q) -> list[tuple[str, str | None]]:
    response = _search(api, workspace, q)
    assert response.status_code == 200, response.json()
    return [(r["chat"], r["message"]) for r in response.json()["results"]]


def _message(chat, content, **fields) -> Message:
    return factories.MessageFactory(chat=chat, content=content, **fields)


def test_a_title_match_ranks_first_then_a_message_with_the_words_twice_then_once(api, workspace):
    # Given three messages of similar length, and a chat named by the words
    plain = factories.ChatFactory(workspace=workspace, title="Plans for the week")
    once = _message(plain, "The orbital mechanics homework is due on Friday, after lunch")
    twice = _message(plain, "Orbital mechanics, again: orbital mechanics problems for Friday")
    _message(plain, "Nothing to see in this one, only groceries and a bicycle")
    named = factories.ChatFactory(workspace=workspace, title="Orbital mechanics")

    # When searching for the words
    response = _search(api, workspace, "orbital mechanics")

    # Then the title comes first (with no message), the message saying them twice next
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["chat"], r["message"]) for r in results] == [
        (str(named.id), None),
        (str(plain.id), str(twice.id)),
        (str(plain.id), str(once.id)),
    ]
    assert results[0]["title"] == "Orbital mechanics"
    assert results[1]["title"] == "Plans for the week"
    assert response.json()["next"] is None
    assert {"chat", "message", "title", "snippet", "created_at"} == results[1].keys()


def test_words_match_their_other_forms_and_any_branch_of_the_conversation(api, workspace, chat):
    # Given a message and a sibling version of it (an edited question: same parent)
    first = _message(chat, "How do I plan the migration?")
    answer = _message(chat, "Start small.", role=Message.Role.ASSISTANT, parent=first)
    sibling = _message(chat, "Which databases does the migration support?", parent=None)
    chat.leaf_id = answer.id
    chat.save(update_fields=["leaf_id"])

    # Then both branches are searched, and "migrations" finds "migration" (stemmed)
    assert sorted(_found(api, workspace, "migrations")) == sorted(
        [(str(chat.id), str(first.id)), (str(chat.id), str(sibling.id))]
    )


def test_the_snippet_marks_the_words_and_escapes_everything_else(api, workspace, chat):
    _message(chat, 'The quokka <script>alert("x")</script> & <b>smiles</b> at \ue000 us')

    snippet = _search(api, workspace, "quokka").json()["results"][0]["snippet"]

    assert "<mark>quokka</mark>" in snippet
    assert "<script>" not in snippet and "<b>" not in snippet
    assert "&lt;script&gt;" in snippet and "&amp;" in snippet
    # The only tags are the marks; text that looks like the marker is never a mark.
    assert snippet.count("<") == snippet.count("<mark>") + snippet.count("</mark>") == 2


def test_words_between_angle_brackets_are_words(api, workspace, chat):
    message = _message(chat, "Render the <Button> component inside <Toolbar/>")

    assert _found(api, workspace, "button toolbar") == [(str(chat.id), str(message.id))]


def test_a_title_hit_has_its_title_as_the_snippet_escaped(api, workspace):
    chat = factories.ChatFactory(workspace=workspace, title="<img src=x onerror=alert(1)> wombat notes")

    [result] = _search(api, workspace, "wombat").json()["results"]

    assert (result["chat"], result["message"]) == (str(chat.id), None)
    assert result["title"] == "<img src=x onerror=alert(1)> wombat notes"  # plain text: the client escapes it
    assert result["snippet"] == "&lt;img src=x onerror=alert(1)&gt; <mark>wombat</mark> notes"


def test_only_members_search_and_only_their_workspace(api, workspace, chat, make_user):
    # Given a chat of another workspace that says the same words
    stranger = make_user()
    other = factories.MembershipFactory(user=stranger, workspace__name="Other").workspace
    _message(factories.ChatFactory(workspace=other), "capybara facts")
    mine = _message(chat, "capybara facts")

    # Then a member finds only their workspace's; the other workspace and an unknown one are 404s
    assert _found(api, workspace, "capybara") == [(str(chat.id), str(mine.id))]
    assert _search(api, other, "capybara").status_code == 404
    assert api.get(URL, {"workspace": str(uuid.uuid4()), "q": "capybara"}).status_code == 404
    assert api.get(URL, {"workspace": "not-a-uuid", "q": "capybara"}).status_code == 400
    anonymous = APIClient().get(URL, {"workspace": str(workspace.id), "q": "capybara"})
    assert anonymous.status_code == 403


def test_the_trash_never_appears_and_archived_chats_do(api, workspace, user):
    trashed = chat_create(workspace=workspace, title="Axolotl care", created_by=user)
    _message(trashed, "axolotl tank temperature")
    archived = chat_create(workspace=workspace, title="Axolotl food", created_by=user)
    Chat.objects.filter(pk=archived.pk).update(archived_at=archived.created_at)

    chat_mark_trashed(chat=trashed)

    assert _found(api, workspace, "axolotl") == [(str(archived.id), None)]

    chat_mark_restored(chat=trashed)

    assert len(_found(api, workspace, "axolotl")) == 3  # back: its title and its message


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "quokka " * 150}, "q"),
        ({"q": '"'}, "word"),
        ({"q": "("}, "word"),
        ({"q": "*"}, "word"),
        ({"q": "-"}, "word"),
        ({"q": "-quokka"}, "word"),
        ({"q": "quokka", "cursor": "not-a-cursor"}, "cursor"),
        ({"q": "quokka", "limit": "0"}, "limit"),
    ],
)
def test_a_bad_query_is_a_400_with_a_message(api, workspace, params, fragment):
    response = api.get(URL, {"workspace": str(workspace.id), **params})
    assert response.status_code == 400
    assert fragment in response.json()["detail"]


@pytest.mark.parametrize(
    "q",
    [
        'quokka"',
        '"quokka',
        "NEAR(quokka",
        "quokka AND (",
        "quokka OR",
        "quokka*",
        "body:quokka",
        "^quokka",
        "quokka -mango",
        "{quokka}",
    ],
)
def test_search_syntax_in_the_words_is_never_an_error(api, workspace, chat, q):
    message = _message(chat, "a quokka and a body near the river")
    assert _found(api, workspace, q) == [(str(chat.id), str(message.id))]


def test_quoted_words_are_a_phrase_or_joins_and_minus_leaves_out(api, workspace, chat):
    adjacent = _message(chat, "the red panda sleeps")
    apart = _message(chat, "a panda that is red")
    mango = _message(chat, "a mango")

    assert _found(api, workspace, '"red panda"') == [(str(chat.id), str(adjacent.id))]
    assert _found(api, workspace, "panda -sleeps") == [(str(chat.id), str(apart.id))]
    assert sorted(_found(api, workspace, "sleeps or mango")) == sorted(
        [(str(chat.id), str(adjacent.id)), (str(chat.id), str(mango.id))]
    )


def test_pages_follow_the_next_link_to_the_end(api, workspace, chat):
    ids = {str(_message(chat, f"lemur report number {n}").id) for n in range(25)}

    first = _search(api, workspace, "lemur").json()
    assert len(first["results"]) == search.PAGE and first["next"]
    second = api.get(first["next"]).json()

    seen = [r["message"] for r in first["results"] + second["results"]]
    assert len(seen) == 25 and set(seen) == ids
    assert second["next"] is None
    assert len(_search(api, workspace, "lemur", limit=5).json()["results"]) == 5


def test_a_reply_is_searchable_once_its_turn_seals(api, workspace, chat, settings, turns_not_enqueued):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0  # no pacing: the reply is written at once
    # Given a turn started, its reply not yet sealed
    turn = stream_start(chat=chat, content="/echo The pangolin rolls into a ball")
    question = (str(chat.id), str(turn.user_message.id))
    reply = (str(chat.id), str(turn.assistant_message.id))
    assert _found(api, workspace, "pangolin") == [question]

    # When the turn runs and seals
    assert stream_run(stream_id=turn.stream.id) == "completed"

    # Then the reply is found too
    assert Message.objects.get(pk=turn.assistant_message.pk).content == "The pangolin rolls into a ball"
    assert sorted(_found(api, workspace, "pangolin")) == sorted([question, reply])


def test_an_edited_message_and_a_renamed_chat_are_found_by_their_new_words(api, workspace, chat):
    message = _message(chat, "the okapi is shy")
    Message.objects.filter(pk=message.pk).update(content="the tapir is shy")
    chat_rename(chat=chat, title="Tapir sightings")

    assert _found(api, workspace, "okapi") == []
    assert _found(api, workspace, "tapir") == [(str(chat.id), None), (str(chat.id), str(message.id))]
    assert _found(api, workspace, "first") == []  # the old title ("First chat") is gone from the index


def test_the_placeholder_title_of_an_untitled_chat_is_not_a_match(api, workspace, user):
    chat_create(workspace=workspace, title="", created_by=user)  # "New chat" until its first message

    assert _found(api, workspace, "new chat") == []


def test_a_purged_chat_is_gone_from_the_index(api, workspace, chat):
    _message(chat, "the narwhal tusk")
    kept = factories.ChatFactory(workspace=workspace, title="Narwhal")

    chats_purge(chat_ids=[chat.id])

    assert _found(api, workspace, "narwhal") == [(str(kept.id), None)]
    assert search.index_rows(chat_ids=[chat.id]) == 0
    assert search.index_rows(chat_ids=[kept.id]) == 1


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLite only: its index is kept by triggers")
def test_a_table_rebuilt_by_a_later_migration_gets_its_triggers_and_index_back(api, workspace, chat):
    # Given the triggers dropped, as SQLite's table rebuild (a later AlterField) drops them
    with connection.cursor() as cursor:
        for name in search.SQLITE_TRIGGER_NAMES:
            cursor.execute(f"DROP TRIGGER {name}")
    message = _message(chat, "the dugong grazes")
    assert _found(api, workspace, "dugong") == []

    # When the index is checked (after every migrate)
    assert search.index_ensure() is True

    # Then what was missed is indexed, and writes are followed again
    assert _found(api, workspace, "dugong") == [(str(chat.id), str(message.id))]
    later = _message(chat, "another dugong")
    assert len(_found(api, workspace, "dugong")) == 2 and (str(chat.id), str(later.id)) in _found(api, workspace, "dugong")
    assert search.index_ensure() is False  # nothing to repair


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLite only: PostgreSQL ranks every match")
def test_a_word_most_messages_hold_ranks_its_newest_matches_on_sqlite(api, workspace, chat, monkeypatch):
    # Given more messages with the word than a query ranks (the bound, made small)
    monkeypatch.setattr(search, "CANDIDATES", 3)
    older = [_message(chat, "ibis ibis ibis, the best") for _ in range(2)]
    newer = [_message(chat, f"an ibis {n}") for n in range(3)]

    # Then the newest are ranked (the older ones, though they say it thrice, are past the bound)
    found = {message for _, message in _found(api, workspace, "ibis")}
    assert found == {str(m.id) for m in newer}
    assert not found & {str(m.id) for m in older}
    # More words narrow the candidates: the newest messages holding all of them (a phrase's too)
    assert {m for _, m in _found(api, workspace, '"the best" ibis')} == {str(m.id) for m in older}
