from __future__ import annotations

import time
import uuid

import pytest

from mothership.infra.redis import get_redis
from streams import locks


def test_acquire_is_exclusive_and_release_is_owner_checked(settings):
    chat, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert locks.lock_acquire(chat_id=chat, stream_id=first)
    assert not locks.lock_acquire(chat_id=chat, stream_id=second)
    assert not locks.lock_release(chat_id=chat, stream_id=second)  # a stale owner cannot free it
    assert locks.lock_owner(chat_id=chat) == str(first)
    assert locks.lock_release(chat_id=chat, stream_id=first)
    assert locks.lock_owner(chat_id=chat) is None


def test_lock_ttl_comes_from_settings_and_heartbeat_extends_only_for_the_owner(settings):
    settings.MOTHERSHIP_STREAM_LOCK_TTL = 0.4
    chat, owner, stranger = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    locks.lock_acquire(chat_id=chat, stream_id=owner)
    assert 0 < get_redis().pttl(locks.lock_key(chat)) <= 400
    settings.MOTHERSHIP_STREAM_LOCK_TTL = 5
    assert not locks.lock_heartbeat(chat_id=chat, stream_id=stranger)
    assert get_redis().pttl(locks.lock_key(chat)) <= 400
    assert locks.lock_heartbeat(chat_id=chat, stream_id=owner)
    assert get_redis().pttl(locks.lock_key(chat)) > 4000
    locks.lock_release(chat_id=chat, stream_id=owner)


def test_lock_expires_without_heartbeat(settings):
    settings.MOTHERSHIP_STREAM_LOCK_TTL = 0.2
    chat, owner = uuid.uuid4(), uuid.uuid4()
    locks.lock_acquire(chat_id=chat, stream_id=owner)
    time.sleep(0.35)
    assert locks.lock_owner(chat_id=chat) is None
    assert not locks.lock_heartbeat(chat_id=chat, stream_id=owner)


def test_owners_of_many_chats_in_one_mget():
    chats = [uuid.uuid4() for _ in range(3)]
    locks.lock_acquire(chat_id=chats[0], stream_id=chats[1])
    owners = locks.lock_owners(chats)
    assert owners == {str(chats[0]): str(chats[1]), str(chats[1]): None, str(chats[2]): None}
    assert locks.lock_owners([]) == {}


def test_lock_key_refuses_non_uuid_ids():
    with pytest.raises(ValueError):
        locks.lock_key("chat:1 OR *")
