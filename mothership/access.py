"""Access withdrawn at once.

When a user's access may have shrunk (a membership deleted, the user saved: deactivated or a new
password, a logout, an API token deleted), every socket of that user, in every web process, is
told through the user's group (``access.changed``) and checks again what it holds: the user must
still be active, the session or token it authenticated with still valid (a new password ends
the other sessions), and each subscription's chat or workspace still the user's. Whatever fails
is dropped with an error frame ``forbidden``; a socket left with nothing is closed with 4403.
"""

from __future__ import annotations

import logging
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.db import transaction
from django.utils.crypto import constant_time_compare
from rest_framework.authtoken.models import Token

from chats.selectors import still_visible
from mothership.infra import groups

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "access.changed"  # channel-layer type; the consumer's ``access_changed`` handler


def access_changed_push(*, user_id, ended_session: str | None = None) -> None:
    """Tell every socket of ``user_id`` to check its access again (after the change commits).

    A Redis that is away loses the push (logged): the change itself is never refused for it.
    """

    def push():
        try:
            groups.publish(groups.user_group(user_id), {"type": MESSAGE_TYPE, "endedSession": ended_session})
        except Exception:
            logger.exception("could not tell the sockets of user %s that their access changed", user_id)

    transaction.on_commit(push)


def socket_still_signed_in(*, user_id, session_key: str | None, token_key: str | None) -> bool:
    """Whether a socket authenticated so may still act as ``user_id``."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    if token_key:
        return Token.objects.filter(key=token_key, user_id=user_id).exists()
    if session_key:
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        if not store.exists(session_key):
            return False
        return constant_time_compare(store.load().get(HASH_SESSION_KEY, ""), user.get_session_auth_hash())
    return True  # authenticated otherwise (in-process tests set the user on the scope)


def grants_still_held(*, user_id, grants: dict[str, tuple[str, str, dict]]) -> set[str]:
    """Of a socket's subscriptions (group → (kind, id, names)), the groups the user may still hold."""
    chats, workspaces = still_visible(
        user_id=user_id,
        chat_ids=[pk for kind, pk, _ in grants.values() if kind == "chat"],
        workspace_ids=[pk for kind, pk, _ in grants.values() if kind == "workspace"],
    )
    held = {"chat": chats, "workspace": workspaces}
    return {group for group, (kind, pk, _) in grants.items() if pk in held[kind]}
