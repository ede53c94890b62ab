"""Retry, Regenerate and Continue: the shown branch's last reply answered again.

Regenerate (and Retry, the same on a failed reply) starts the reply over from the same user
message in a new reply beside the old one (a version); Continue sends the kept text as the start
of the reply and appends what follows, so the reply stays one message, whose usage adds up every
attempt. Only the last reply, only
while nothing streams, Continue only with text and a model that can continue.
"""

from __future__ import annotations

import json

import pytest

from chats.models import Message
from chats.selectors import conversation_prefix
from mothership.infra.llm_models import parse_llm_models
from streams import eventlog, events
from streams.models import Stream
from streams.providers.local import LocalProvider
from streams.services import CannotAnswerAgain, StreamConflict, stream_answer_again, stream_cancel, stream_run, stream_start
from tests.support.turns import run_turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def run_inline(turns_not_enqueued, settings):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    settings.MOTHERSHIP_LOCAL_REPLY_TOKENS = 25
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0
    return turns_not_enqueued


def _stopped_reply(chat, content="tell me everything"):
    """A turn stopped before it ran, its kept text written as a worker's seal would have."""
    turn = stream_start(chat=chat, content=content)
    stream_cancel(chat=chat, stream_id=turn.stream.id, reason="user")
    Message.objects.filter(pk=turn.assistant_message.pk).update(content="The first half,", output_tokens=3)
    return turn


def test_regenerate_answers_the_same_user_message_again_in_a_new_version_beside_the_old(chat):
    status, first, message = run_turn(chat, "one")
    assert status == "completed"
    first_text, first_usage = message.content, message.usage

    again = stream_answer_again(chat=chat, message_id=message.pk, continues=False)
    assert again.assistant_message.pk != message.pk and again.user_message.pk == first.user_message_id
    assert again.assistant_message.parent_id == first.user_message_id  # a sibling of the old reply
    assert stream_run(stream_id=again.stream.id) == "completed"

    # The old reply is kept as it was: a version to go back to.
    message.refresh_from_db()
    assert (message.content, message.usage, message.status) == (first_text, first_usage, "complete")
    new = Message.objects.get(pk=again.assistant_message.pk)
    assert new.status == "complete" and new.stream_id == again.stream.id
    # Answered again, as a sampling model would: another reply to the same question
    model = LocalProvider(tokens_per_second=0, reply_tokens=25)
    assert new.content == "".join(model.reply_for([{"role": "user", "content": "one"}], attempt=1)) != first_text
    assert new.output_tokens == 25  # each version counts its own attempt
    assert Message.objects.filter(chat=chat).count() == 3
    # The model and the warms see the shown branch only: the new version.
    assert conversation_prefix(chat_id=chat.pk) == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": new.content},
    ]


def test_a_reply_with_nothing_in_it_is_answered_again_in_place(chat):
    turn = stream_start(chat=chat, content="one")
    stream_cancel(chat=chat, stream_id=turn.stream.id, reason="user")  # stopped before a word

    again = stream_answer_again(chat=chat, message_id=turn.assistant_message.pk, continues=False)

    assert again.assistant_message.pk == turn.assistant_message.pk
    assert Message.objects.filter(chat=chat).count() == 2


def test_continue_sends_the_kept_text_as_the_start_of_the_reply_and_appends_what_follows(chat, monkeypatch):
    seen = []
    original = LocalProvider.stream

    def spy(self, *, messages, stop, prefix="", **kwargs):
        seen.append((messages, prefix))
        return original(self, messages=messages, stop=stop, prefix=prefix, **kwargs)

    monkeypatch.setattr(LocalProvider, "stream", spy)
    stopped = _stopped_reply(chat)

    again = stream_answer_again(chat=chat, message_id=stopped.assistant_message.pk, continues=True)
    assert stream_run(stream_id=again.stream.id) == "completed"

    assert seen == [([{"role": "user", "content": "tell me everything"}], "The first half,")]
    message = Message.objects.get(pk=stopped.assistant_message.pk)
    follows = "".join(
        LocalProvider(tokens_per_second=0, reply_tokens=25).reply_for(
            [{"role": "user", "content": "tell me everything"}, {"role": "assistant", "content": "The first half,"}]
        )
    )
    assert message.content == "The first half," + follows and message.status == "complete"
    assert message.output_tokens == 3 + 25
    started = eventlog.read(again.stream.id)[0]
    assert started["type"] == events.STARTED and started["continued"] is True
    assert eventlog.snapshot_text(eventlog.read(again.stream.id)) == follows  # the log holds what follows only


def test_a_continue_stopped_before_it_ran_keeps_the_text_it_had(chat):
    stopped = _stopped_reply(chat)
    again = stream_answer_again(chat=chat, message_id=stopped.assistant_message.pk, continues=True)
    stream_cancel(chat=chat, stream_id=again.stream.id, reason="user")
    message = Message.objects.get(pk=stopped.assistant_message.pk)
    assert (message.content, message.status) == ("The first half,", "cancelled")


def test_only_the_last_reply_and_only_while_nothing_streams(chat):
    _, _, first = run_turn(chat, "one")
    _, _, second = run_turn(chat, "two")
    with pytest.raises(CannotAnswerAgain, match="Only the last reply"):
        stream_answer_again(chat=chat, message_id=first.pk, continues=False)
    user_message = Message.objects.filter(chat=chat, role="user").last()
    with pytest.raises(CannotAnswerAgain, match="Only the last reply"):
        stream_answer_again(chat=chat, message_id=user_message.pk, continues=False)
    with pytest.raises(CannotAnswerAgain, match="stopped or interrupted"):
        stream_answer_again(chat=chat, message_id=second.pk, continues=True)  # it completed

    live = stream_start(chat=chat, content="three")
    with pytest.raises(StreamConflict):
        stream_answer_again(chat=chat, message_id=live.assistant_message.pk, continues=False)
    assert Stream.objects.filter(chat=chat).count() == 3  # nothing started


def test_continue_is_refused_for_a_model_that_cannot_continue(chat, settings):
    settings.LLM_MODELS = parse_llm_models(
        json.dumps([{"id": "gpt", "provider": "openai", "model": "gpt-x", "base_url": "http://127.0.0.1:9/v1"}]),
        {"OPENAI_API_KEY": "k"},
        max_tokens=100,
    )
    stopped = _stopped_reply(chat)
    with pytest.raises(CannotAnswerAgain, match="cannot continue"):
        stream_answer_again(chat=chat, message_id=stopped.assistant_message.pk, continues=True)


def test_the_api_answers_again_and_says_why_not(api, chat, make_user):
    stopped = _stopped_reply(chat)
    url = f"/api/mothership/chats/{chat.id}/messages/{stopped.assistant_message.pk}"

    response = api.post(url + "/continue", format="json")
    assert response.status_code == 201, response.content
    assert response.json()["message_id"] == str(stopped.assistant_message.pk)
    busy = api.post(url + "/regenerate", format="json")
    assert busy.status_code == 409 and busy.json()["active_stream_id"] == response.json()["stream_id"]
    stream_run(stream_id=response.json()["stream_id"])

    one = api.get(url)
    assert one.status_code == 200
    body = one.json()
    assert body["content"].startswith("The first half,") and body["status"] == "complete"
    assert body["model"] == "mothership-local-1" and body["cost_usd"] is not None and body["duration_ms"] >= 0
    nothing = api.post(url + "/continue", format="json")  # complete: nothing to continue
    assert nothing.status_code == 409 and nothing.json()["detail"].startswith("Only a stopped or interrupted reply")
    assert nothing.json()["active_stream_id"] is None  # JSON null when no turn is live (before: the string "None")
    assert api.post(f"/api/mothership/chats/{chat.id}/messages/not-a-uuid/regenerate", format="json").status_code == 404

    outsider = type(api)()
    outsider.force_authenticate(make_user())
    assert outsider.post(url + "/regenerate", format="json").status_code == 404
    assert outsider.get(url).status_code == 404
