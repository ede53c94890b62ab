"""ASGI entry point: HTTP through Django, WebSockets at /ws/ through Channels."""

import os
import re

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mothership.settings")
django_asgi_app = get_asgi_application()

# The app serves its own CSS and ES modules through WhiteNoise (see settings: STORAGES).

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from mothership.infra.alive import Lifespan  # noqa: E402
from mothership.infra.concurrency import HttpConcurrencyLimit  # noqa: E402
from mothership.infra.logs import adopt_server_loggers  # noqa: E402
from mothership.infra.request_ids import RequestIdMiddleware  # noqa: E402
from mothership.infra.uploads import RequestBodyLimit  # noqa: E402
from mothership.routing import websocket_urlpatterns  # noqa: E402
from mothership.ws_auth import TokenAuthMiddleware, origin_validator, socket_auth_stack  # noqa: E402
from streams.providers import get_provider  # noqa: E402


def _warm_up() -> None:
    """Do now, once, what the first requests would otherwise each do at the same time.

    A burst right after a start (a deploy, a restart, every tab reconnecting) would otherwise
    import the provider and Celery's publisher (its event dispatcher too), build the URL
    resolver, compile the tile's template and the sends' prepared reads in every one of its
    request threads at once: seconds of CPU on a small machine.
    """
    import threading

    from django.template.loader import get_template
    from django.urls import get_resolver

    from mothership.celery import app as celery_app
    from mothership.infra.prepared import prepare_all

    get_provider()
    celery_app.amqp.send_task_message  # noqa: B018 (builds Celery's publisher side)
    celery_app.producer_pool  # noqa: B018 (and its pool of producers)
    get_resolver().reverse_dict  # noqa: B018
    get_template("mothership/_tile.html")
    # In a thread of its own: compiling may connect (PostgreSQL's version), which the server's
    # event loop thread may not do.
    compiling = threading.Thread(target=prepare_all, name="prepare-reads")
    compiling.start()
    compiling.join()


_warm_up()
# uvicorn set up its own loggers before it imported this module: its lines go through the app's handler.
adopt_server_loggers()

# The lifespan beats the process's heartbeat file from its event loop (mothership.infra.alive).
# Each request and socket has its id from the start (the log context, the X-Request-ID header).
application = Lifespan(
    RequestIdMiddleware(
        ProtocolTypeRouter(
            {
                "http": HttpConcurrencyLimit(
                    # A body past its path's limit is refused as it arrives, before Django stores it.
                    RequestBodyLimit(
                        django_asgi_app,
                        limits=[
                            (
                                re.compile(r"^/api/mothership/chats/[^/]+/attachments/?$"),
                                lambda: settings.MOTHERSHIP_ATTACHMENT_MAX_BYTES,
                            ),
                            (
                                re.compile(r"^/api/mothership/workspaces/[^/]+/import/?$"),
                                lambda: settings.MOTHERSHIP_IMPORT_MAX_BYTES,
                            ),
                        ],
                        default=lambda: max(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0, 1024 * 1024),
                    ),
                    limit=settings.MOTHERSHIP_WEB_REQUEST_CONCURRENCY,
                ),
                "websocket": origin_validator(socket_auth_stack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))),
            }
        )
    )
)
