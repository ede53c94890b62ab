"""Model factories (factory_boy): rows as a test needs them, without the services' side effects.

A test that is *about* a service (a tile pushed on create, a turn started) calls the service;
everything else builds its rows here.
"""

from __future__ import annotations

import functools

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from chats.models import Chat, Membership, Message, Workspace
from streams.models import Stream
from warming.models import WarmingSchedule


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user-{n}")
    password = "pw-123456"

    @classmethod
    def _create(cls, model_class, *args, password: str, **kwargs):
        # Hashed as a login expects (by any process of the app), but once per password: PBKDF2
        # costs a third of a second, which every test creating a user would otherwise pay.
        return model_class.objects.create(*args, password=_hashed(password), **kwargs)


@functools.cache
def _hashed(password: str) -> str:
    return make_password(password)


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    workspace = factory.SubFactory(WorkspaceFactory)
    role = Membership.Role.MEMBER


class ChatFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Chat

    workspace = factory.SubFactory(WorkspaceFactory)
    title = factory.Sequence(lambda n: f"Chat {n}")
    updated_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    chat = factory.SubFactory(ChatFactory)
    role = Message.Role.USER
    content = factory.Sequence(lambda n: f"message {n}")
    # Each follows the chat's newest message, as a turn's messages do (one branch).
    parent = factory.LazyAttribute(lambda m: m.chat.messages.order_by("-created_at", "-id").first())


class StreamFactory(factory.django.DjangoModelFactory):
    """A finished turn by default (no lock, no marker): live ones come from ``stream_start``."""

    class Meta:
        model = Stream

    chat = factory.SubFactory(ChatFactory)
    user_message = factory.SubFactory(MessageFactory, chat=factory.SelfAttribute("..chat"))
    assistant_message = factory.SubFactory(
        MessageFactory, chat=factory.SelfAttribute("..chat"), role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE
    )
    status = Stream.Status.COMPLETED
    provider = "local"
    model = "mothership-local-1"


class WarmingScheduleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WarmingSchedule

    chat = factory.SubFactory(ChatFactory)


def spent(workspace, usd: str | None = None, *, nanousd: int | None = None, user=None, kind="turn", model="earlier", at=None):
    """The ledger already holds this charge (``usd`` dollars, or ``nanousd``): written through its
    service, running totals included."""
    import datetime
    import uuid
    from decimal import Decimal

    from django.db import transaction
    from django.utils import timezone

    from spend.services import charge_record

    with transaction.atomic():
        charge_record(
            charge_id=uuid.uuid4(),
            kind=kind,
            workspace_id=workspace.pk,
            user_id=getattr(user, "pk", None),
            chat_id=None,
            model=model,
            tokens={"input_tokens": 10, "output_tokens": 5},
            estimated=False,
            cost_nanousd=int(Decimal(usd) * 10**9) if usd is not None else nanousd,
            at=at if isinstance(at, datetime.datetime) else timezone.now(),
        )
