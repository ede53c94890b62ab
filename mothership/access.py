"""Access withdrawn at once, and within ``MOTHERSHIP_SOCKET_RECHECK_SECONDS`` whatever the way.

When a user's access may have shrunk (a membership deleted, the user saved: deactivated or a new
password, a logout, an API token deleted: DRF's or a named one), every socket of that user, in every web process, is
told through the user's group (``access.changed``) and checks again what it holds: the user must
still be active, the session or token it authenticated with still valid (a new password ends
the other sessions), and each subscription's chat or workspace still the user's. Whatever fails
is dropped with an error frame ``forbidden``; a socket left with nothing is closed with 4403.

A change that sends no signal (``QuerySet.update``, a raw ``DELETE``, another program writing the
database) is caught by the same check, which every socket also makes on a timer: one query per
socket per period, never per message.
"""

from __future__ import annotations

import logging
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from rest_framework.authtoken.models import Token

from chats.selectors import still_visible
from mothership import tokens
from mothership.infra import groups
from mothership.models import ApiToken

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


_DATABASE_SESSIONS = "django.contrib.sessions.backends.db"


def socket_access(
    *, user_id, session_key: str | None, token_key: str | None, grants: dict[str, tuple[str, str, dict]]
) -> tuple[bool, set[str]]:
    """Whether a socket authenticated so may still act as ``user_id`` (active, its API token not
    deleted, its session not ended, no new password since), and which of its subscriptions
    (group → (kind, id, names)) the user may still hold: one query, sessions in the database.

    Another ``SESSION_ENGINE`` costs its own look-up of the session besides.
    """
    chats, workspaces = still_visible(
        user_ref=OuterRef("pk"),
        chat_ids=[pk for kind, pk, _ in grants.values() if kind == "chat"],
        workspace_ids=[pk for kind, pk, _ in grants.values() if kind == "workspace"],
    )
    checks = {"chat": chats, "workspace": workspaces}
    by_group = {group: checks[kind][str(pk)] for group, (kind, pk, _) in grants.items()}
    names = {group: f"_grant_{i}" for i, group in enumerate(by_group)}
    annotations = {names[group]: check for group, check in by_group.items()}
    session_in_db = bool(session_key) and not token_key and settings.SESSION_ENGINE == _DATABASE_SESSIONS
    if token_key:
        digest = tokens.credential_digest(token_key)  # a named token's socket remembers its digest, DRF's its key
        rows = ApiToken.objects.filter(key_hash=digest) if digest else Token.objects.filter(key=token_key)
        annotations["_token_alive"] = Exists(rows.filter(user_id=OuterRef("pk")))
    elif session_in_db:
        live = Session.objects.filter(session_key=session_key, expire_date__gt=timezone.now())
        annotations["_session_data"] = Subquery(live.values("session_data")[:1])
    user = get_user_model().objects.filter(pk=user_id, is_active=True).annotate(**annotations).first()
    if user is None:
        return False, set()
    if token_key:
        signed_in = user._token_alive
    elif session_key:
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        if session_in_db:
            data = store.decode(user._session_data) if user._session_data is not None else {}
        else:
            data = store.load() if store.exists(session_key) else {}
        signed_in = str(data.get(SESSION_KEY)) == str(user.pk) and constant_time_compare(
            data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
        )
    else:
        signed_in = True  # authenticated otherwise (in-process tests set the user on the scope)
    if not signed_in:
        return False, set()
    return True, {group for group, name in names.items() if getattr(user, name)}


def socket_still_signed_in(*, user_id, session_key: str | None, token_key: str | None) -> bool:
    """Whether a socket authenticated so may still act as ``user_id``."""
    return socket_access(user_id=user_id, session_key=session_key, token_key=token_key, grants={})[0]
