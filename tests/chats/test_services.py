"""chats' writes, in ordinary (non-transactional) tests: on-commit work is captured, not assumed."""

from __future__ import annotations

import dataclasses

import pytest

from chats.models import USAGE_FIELDS, Message
from chats.services import chat_create
from chats.signals import chat_created
from streams.providers import Usage

pytestmark = pytest.mark.django_db


def test_a_new_chat_is_announced_only_after_commit(workspace, django_capture_on_commit_callbacks):
    # Given a receiver of chat_created
    heard = []

    def receiver(sender, *, chat_id, workspace_id, **kwargs):
        heard.append((chat_id, workspace_id))

    chat_created.connect(receiver)
    try:
        # When a chat is created inside a transaction
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            chat = chat_create(workspace=workspace, title="Plans")
            # Then nothing is announced before the commit
            assert heard == []
    finally:
        chat_created.disconnect(receiver)
    # And exactly once after it, with the ids the receiver needs
    assert len(callbacks) == 1 and heard == [(chat.pk, workspace.pk)]


def test_a_message_usage_and_a_provider_usage_name_the_same_token_counts():
    # Message's columns and Usage's fields are one list: a turn's usage is saved field for field.
    assert tuple(f.name for f in dataclasses.fields(Usage) if f.name != "estimated") == USAGE_FIELDS
    assert tuple(Usage().as_dict()) == USAGE_FIELDS
    message = Message(**Usage(1, 2, 3, 4).as_dict())
    assert message.usage == {"input_tokens": 1, "cache_read_tokens": 2, "cache_write_tokens": 3, "output_tokens": 4}
