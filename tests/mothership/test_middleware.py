"""The middleware chain runs in one thread per request, with no hops back to the event loop."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string


def test_the_middleware_chain_is_synchronous_from_the_innermost_out():
    # Django builds the chain from the innermost middleware out, and a middleware that can run
    # either way follows the one inside it. So a sync-only innermost middleware makes every one
    # run synchronously in the request's thread. Were it async-capable, the mixins inside the
    # first sync-only one would run async, each hopping to a thread and back per request, and
    # each hop waits behind every socket the event loop serves.
    classes = [import_string(path) for path in settings.MIDDLEWARE]
    assert not getattr(classes[-1], "async_capable", False), settings.MIDDLEWARE[-1]
    assert all(getattr(cls, "sync_capable", True) for cls in classes), "an async-only middleware forces hops"
