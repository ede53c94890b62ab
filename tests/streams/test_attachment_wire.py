"""Attachments reach each model in its own wire format (checked by local servers that speak it),
a model that cannot read a file refuses the send naming it, and a warm sends exactly the files
the next turn sends."""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from chats.attachments import AttachmentRefused, attachment_discard, attachment_upload
from chats.models import Attachment
from chats.selectors import conversation_prefix, conversation_prefixes
from chats.services import chat_create
from mothership.infra.llm_models import parse_llm_models
from streams import locks
from streams.providers import get_provider
from streams.services import stream_edit, stream_run, stream_start
from streams.services.start import turn_attachments
from tests.support import fake_anthropic, fake_openai
from tests.support.files import image_bytes, pdf_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def attach(chat, user, data: bytes, name: str) -> Attachment:
    return attachment_upload(chat=chat, user=user, file=SimpleUploadedFile(name, data))


def send(chat, user, content: str, files):
    turn = stream_start(
        chat=chat,
        content=content,
        user=user,
        attachments=turn_attachments(chat=chat, user=user, attachment_ids=[str(f.pk) for f in files]),
    )
    return stream_run(stream_id=turn.stream.id), turn


@pytest.fixture
def three_files(chat, user):
    return [
        attach(chat, user, image_bytes("PNG", size=(3000, 1500)), "chart.png"),
        attach(chat, user, pdf_bytes("Revenue grew"), "report.pdf"),
        attach(chat, user, b"a,b\n1,2\n", "table.csv"),
    ]


def _models(settings, entry: dict, env: dict) -> None:
    settings.LLM_MODELS = parse_llm_models(json.dumps([entry]), env, max_tokens=4096)
    settings.MOTHERSHIP_DELTA_FLUSH_MS = 0
    settings.LLM_MAX_RETRIES, settings.LLM_TIMEOUT = 0, 5


@pytest.fixture
def anthropic(settings, turns_not_enqueued):
    server = fake_anthropic.FakeAnthropic()
    entry = {"id": "claude", "provider": "anthropic", "model": "claude-fake", "base_url": server.url}
    _models(settings, entry, {"ANTHROPIC_API_KEY": fake_anthropic.API_KEY})
    yield server
    server.stop()


def _openai(settings, monkeypatch, **flags):
    server = fake_openai.FakeOpenAI()
    entry = {"id": "gpt", "provider": "openai", "model": "gpt-fake", "base_url": server.url, **flags}
    _models(settings, entry, {"OPENAI_API_KEY": "sk-test"})
    return server


def _decoded(data: str) -> bytes:
    return base64.b64decode(data, validate=True)


def test_anthropic_gets_an_image_block_a_document_block_and_the_text_file_before_the_question(anthropic, chat, user, three_files):
    status, _ = send(chat, user, "What do these show?", three_files)
    assert status == "completed"
    (question,) = anthropic.requests[-1]["body"]["messages"]
    image, document, text, words = question["content"]
    assert image["type"] == "image" and image["source"]["type"] == "base64" and image["source"]["media_type"] == "image/png"
    sized = Image.open(io.BytesIO(_decoded(image["source"]["data"])))
    assert max(sized.size) == 1568  # the copy sized for the models, not the 3000 px original
    assert document["type"] == "document" and document["title"] == "report.pdf"
    assert document["source"] == {"type": "base64", "media_type": "application/pdf", "data": document["source"]["data"]}
    assert _decoded(document["source"]["data"]).startswith(b"%PDF-")
    assert text == {"type": "text", "text": '<file name="table.csv" type="text/csv">\na,b\n1,2\n\n</file>'}
    assert words == {"type": "text", "text": "What do these show?", "cache_control": {"type": "ephemeral"}}


def test_a_warm_sends_exactly_the_files_the_next_turn_sends_and_the_next_turn_reads_them_cached(
    anthropic, chat, user, three_files
):
    send(chat, user, "What do these show?", three_files)
    get_provider("claude").warm(messages=conversation_prefix(chat_id=chat.id))
    warm = anthropic.requests[-1]["body"]["messages"]
    assert conversation_prefixes(chat_ids=[chat.id])[chat.id] == conversation_prefix(chat_id=chat.id)  # the batch's prefix too
    _, turn = send(chat, user, "And the trend?", [])
    following = anthropic.requests[-1]["body"]["messages"]

    def bare(messages):
        return [[{k: v for k, v in block.items() if k != "cache_control"} for block in m["content"]] for m in messages]

    assert bare(warm[:2]) == bare(following[:2])  # the files, byte for byte, in the cached prefix
    reply = turn.assistant_message
    reply.refresh_from_db()
    assert reply.cache_read_tokens > 0 and reply.cache_write_tokens < reply.cache_read_tokens


def test_the_same_question_with_another_file_is_another_prefix_for_the_cache(anthropic, chat, user):
    first = attach(chat, user, image_bytes("PNG", color=(1, 2, 3)), "a.png")
    send(chat, user, "look", [first])
    messages = conversation_prefix(chat_id=chat.id)
    other = json.loads(json.dumps(messages))
    other[0]["attachments"][0]["sha256"] = "0" * 64
    assert messages != other


def test_openai_gets_image_url_parts_and_a_file_part_for_a_model_that_reads_documents(
    settings, monkeypatch, turns_not_enqueued, chat, user, three_files
):
    server = _openai(settings, monkeypatch, documents=True)
    try:
        status, _ = send(chat, user, "Summarise", three_files)
        assert status == "completed"
        (question,) = server.requests[-1]["body"]["messages"]
    finally:
        server.stop()
    image, document, text, words = question["content"]
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,")
    assert document == {"type": "file", "file": {"filename": "report.pdf", "file_data": document["file"]["file_data"]}}
    assert document["file"]["file_data"].startswith("data:application/pdf;base64,")
    assert text["type"] == "text" and text["text"].startswith('<file name="table.csv"')
    assert words == {"type": "text", "text": "Summarise"}


def test_a_model_without_document_support_reads_a_pdfs_text(settings, monkeypatch, turns_not_enqueued, chat, user):
    server = _openai(settings, monkeypatch)  # documents default off for OpenAI-compatible servers
    pdf = attach(chat, user, pdf_bytes("Revenue grew"), "report.pdf")
    try:
        send(chat, user, "Summarise", [pdf])
        (question,) = server.requests[-1]["body"]["messages"]
    finally:
        server.stop()
    document, words = question["content"]
    assert document["type"] == "text" and "Revenue grew 1" in document["text"] and 'name="report.pdf"' in document["text"]


def test_a_model_that_reads_no_images_refuses_the_send_naming_the_model_and_nothing_starts(
    settings, monkeypatch, api, chat, user, turns_not_enqueued
):
    server = _openai(settings, monkeypatch, images=False, label="Text Only")
    try:
        image = attach(chat, user, image_bytes("PNG"), "p.png")
        answer = api.post(
            f"/api/mothership/chats/{chat.id}/messages", {"content": "see", "attachments": [str(image.pk)]}, format="json"
        )
    finally:
        server.stop()
    assert answer.status_code == 400 and answer.json()["code"] == "model_cannot_read"
    assert "Text Only cannot read images" in answer.json()["detail"] and "p.png" in answer.json()["detail"]
    assert not chat.messages.exists() and not server.requests


def test_a_pdf_with_no_text_is_refused_for_a_model_that_reads_only_text(
    settings, monkeypatch, api, chat, user, turns_not_enqueued
):
    server = _openai(settings, monkeypatch, label="Texty")
    try:
        scan = attach(chat, user, pdf_bytes(" "), "scan.pdf")
        Attachment.objects.filter(pk=scan.pk).update(text="")
        answer = api.post(
            f"/api/mothership/chats/{chat.id}/messages", {"content": "read", "attachments": [str(scan.pk)]}, format="json"
        )
    finally:
        server.stop()
    assert answer.status_code == 400 and "Texty reads PDFs only as their text" in answer.json()["detail"]


def test_the_local_model_starts_its_reply_with_one_line_per_file_and_counts_their_tokens(
    settings, turns_not_enqueued, chat, user
):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    files = [attach(chat, user, b"hello file\n", "notes.txt"), attach(chat, user, image_bytes("PNG"), "p.png")]
    status, turn = send(chat, user, "/echo and the rest", files)
    assert status == "completed"
    reply = turn.assistant_message
    reply.refresh_from_db()
    image = Attachment.objects.get(name="p.png")
    assert reply.content.splitlines() == [
        "notes.txt (11 bytes, text/plain)",
        f"p.png ({image.size} bytes, image/png)",
        "",
        "and the rest",
    ]
    assert reply.input_tokens + reply.cache_write_tokens + reply.cache_read_tokens >= sum(f.tokens for f in files)


def test_a_question_of_files_alone_is_answered_and_titles_an_untitled_chat(settings, turns_not_enqueued, workspace, user):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    chat = chat_create(workspace=workspace, created_by=user)
    status, turn = send(chat, user, "", [attach(chat, user, b"x", "only.txt")])
    chat.refresh_from_db()
    reply = turn.assistant_message
    reply.refresh_from_db()
    assert status == "completed" and reply.content.startswith("only.txt (1 bytes, text/plain)\n\n")
    assert chat.title == "only.txt"


def test_an_edited_question_keeps_its_files_and_the_model_reads_them_again(settings, turns_not_enqueued, chat, user):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    files = [attach(chat, user, b"abc", "a.txt")]
    _, first = send(chat, user, "/echo one", files)
    edited = stream_edit(chat=chat, message_id=first.user_message.pk, content="/echo two", user=user)
    assert stream_run(stream_id=edited.stream.id) == "completed"
    assert list(edited.user_message.attachments.all()) == files
    reply = edited.assistant_message
    reply.refresh_from_db()
    assert reply.content == "a.txt (3 bytes, text/plain)\n\ntwo"


def test_a_file_removed_between_the_check_and_the_send_refuses_the_send_and_frees_the_chat(turns_not_enqueued, chat, user):
    file = attach(chat, user, b"draft", "d.txt")
    checked = turn_attachments(chat=chat, user=user, attachment_ids=[str(file.pk)])
    attachment_discard(attachment=file)  # the other tab's remove lands first
    with pytest.raises(AttachmentRefused) as refused:
        stream_start(chat=chat, content="see", user=user, attachments=checked)
    assert refused.value.status == 409 and "removed meanwhile" in refused.value.detail
    assert not chat.messages.exists() and locks.lock_owner(chat_id=chat.pk) is None


def test_the_model_reads_the_files_in_the_order_the_send_named_them_not_the_upload_order(
    settings, turns_not_enqueued, chat, user
):
    settings.MOTHERSHIP_LOCAL_TOKENS_PER_SECOND = 0
    first, second = attach(chat, user, b"1", "first.txt"), attach(chat, user, b"22", "second.txt")
    _, turn = send(chat, user, "/echo x", [second, first])
    reply = turn.assistant_message
    reply.refresh_from_db()
    assert reply.content.splitlines()[:2] == ["second.txt (2 bytes, text/plain)", "first.txt (1 bytes, text/plain)"]
    assert [a["name"] for a in conversation_prefix(chat_id=chat.id)[0]["attachments"]] == ["second.txt", "first.txt"]
    edited = stream_edit(chat=chat, message_id=turn.user_message.pk, content="/echo y", user=user)
    stream_run(stream_id=edited.stream.id)
    again = edited.assistant_message
    again.refresh_from_db()
    assert again.content.splitlines()[:2] == ["second.txt (2 bytes, text/plain)", "first.txt (1 bytes, text/plain)"]
