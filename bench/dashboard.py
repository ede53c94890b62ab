"""The dashboard and the chat list at 10,000 chats: one page against the whole list.

Usage: .venv/bin/python bench/dashboard.py [--chats 10000] [--repeat 20]
Uses DATABASE_URL / REDIS_URL when set (embedded defaults otherwise); creates its own user and
workspace and deletes them afterwards. Times, in this process through Django's test client:
the dashboard page (``GET /``: the newest 100 tiles), the API's first page
(``GET /api/mothership/chats?workspace=…``), its 50th page (a cursor deep in the list), and
what the dashboard cost before it had pages (every tile: the selector with ``limit=N`` and the
tile template for each). Both interleaved in one run; the figures are p50 and the worst run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid

from _common import setup_django

setup_django()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import F  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402
from django.test import Client  # noqa: E402

from chats import services  # noqa: E402
from chats.models import Chat  # noqa: E402
from mothership import selectors  # noqa: E402


def setup(n: int):
    user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}")
    workspace = services.workspace_create(name="bench", owner=user)
    Chat.objects.bulk_create((Chat(workspace=workspace, title=f"chat {i}") for i in range(n)), batch_size=1000)
    Chat.objects.filter(workspace=workspace).update(updated_at=F("created_at"))
    return user, workspace


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(f"database={connection.vendor} chats={args.chats} repeat={args.repeat}")
    user, workspace = setup(args.chats)
    try:
        client = Client()
        client.force_login(user)
        api = f"/api/mothership/chats?workspace={workspace.id}"
        deep = api
        for _ in range(49):
            deep = re.search(r"<http://testserver([^>]+)>", client.get(deep)["Link"]).group(1)

        def dashboard():
            page = client.get(f"/?workspace={workspace.id}")
            assert page.status_code == 200 and page.content.count(b'<li class="tile ') == selectors.CHAT_PAGE

        def whole_list():  # the dashboard before pages: every chat a tile
            views, _ = selectors.chat_list(user=user, workspace=workspace, limit=args.chats)
            html = "".join(render_to_string("mothership/_tile.html", {"tile": view}) for view in views)
            assert html.count('<li class="tile ') == args.chats

        cases = {
            "dashboard (GET /, one page)": dashboard,
            "API first page": lambda: client.get(api),
            "API 50th page (cursor)": lambda: client.get(deep),
            "every tile (before pages)": whole_list,
        }
        times = {name: [] for name in cases}
        for i in range(args.repeat):
            order = list(cases.items())
            for name, fn in order if i % 2 else reversed(order):
                times[name].append(timed(fn))
        for name, values in times.items():
            print(f"{name:<30} p50 {statistics.median(values):8.1f} ms   worst {max(values):8.1f} ms")
        ratio = statistics.median(times["every tile (before pages)"]) / statistics.median(times["dashboard (GET /, one page)"])
        print(f"every tile / one page: {ratio:.0f}x")
    finally:
        workspace.delete()
        user.delete()


if __name__ == "__main__":
    main()
