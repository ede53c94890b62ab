"""Full-text search at --messages messages: ``GET /api/mothership/search`` timed end to end in
this process (DRF, membership, the ranked page, its snippets, the JSON), --searches a run.

The corpus: --workspaces workspaces, --chats chats each spread over them, messages of real
English words (the vocabulary of this repository's docs, drawn with Zipf's law, so a few words
are in most messages and most words in few), user messages short, replies long. Bulk inserted:
the index is written by the same triggers (SQLite) or generated column (PostgreSQL) as any write.
The queries: a rare word, a word of middling frequency, two words, a "phrase" taken from a
message, and a common word (one search in ten; the slowest kind: its matches are most of a
workspace's messages, all ranked).

Usage: .venv/bin/python bench/search.py [--messages 100000] [--searches 200] [--runs 3]
Uses DATABASE_URL when set (the database is created when missing, and its corpus kept for the
next run); the embedded SQLite otherwise (a fresh file each time).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

if not os.environ.get("DATABASE_URL"):
    os.environ.setdefault("MOTHERSHIP_SQLITE_PATH", str(Path(tempfile.mkdtemp(prefix="mothership-bench-")) / "db.sqlite3"))

from _common import ROOT, percentile, setup_django  # noqa: E402


def ensure_database() -> None:
    """The PostgreSQL database DATABASE_URL names, created on its server when missing."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(url)
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"] or None, dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


ensure_database()
setup_django()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from chats.models import Chat, Membership, Message, Workspace  # noqa: E402

PREFIX = "search-bench"


def vocabulary() -> list[str]:
    """Words of this repository's prose, most frequent first."""
    text = " ".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    counts = collections.Counter(w for w in re.findall(r"[a-z]{3,}", text.lower()))
    return [w for w, _ in counts.most_common()]


class Corpus:
    def __init__(self, words: list[str], seed: int = 7):
        self.words = words
        self.random = random.Random(seed)
        self.weights = [1 / (rank + 1) for rank in range(len(words))]  # Zipf's law

    def text(self, low: int, high: int) -> str:
        n = self.random.randint(low, high)
        chosen = self.random.choices(self.words, weights=self.weights, k=n)
        return (" ".join(chosen)).capitalize() + "."


def build(*, messages: int, workspaces: int, chats: int) -> tuple[object, list[Workspace]]:
    user, _ = get_user_model().objects.get_or_create(username=f"{PREFIX}-user")
    existing = list(Workspace.objects.filter(name__startswith=f"{PREFIX}-").order_by("name"))
    if len(existing) == workspaces and Message.objects.filter(chat__workspace__in=existing).count() == messages:
        print(f"corpus kept from an earlier run: {messages:,} messages")
        return user, existing
    Chat.objects.filter(workspace__in=existing).delete()
    Workspace.objects.filter(pk__in=[w.pk for w in existing]).delete()
    corpus = Corpus(vocabulary())
    started = time.perf_counter()
    spaces = [Workspace.objects.create(name=f"{PREFIX}-{n}") for n in range(workspaces)]
    Membership.objects.bulk_create([Membership(user=user, workspace=w) for w in spaces])
    with transaction.atomic():
        rows = Chat.objects.bulk_create(
            [Chat(workspace=spaces[n % workspaces], title=corpus.text(2, 6).rstrip(".")) for n in range(chats)], batch_size=1000
        )
    per_chat, batch = messages // chats, []
    for n in range(messages):
        chat = rows[n // per_chat] if n // per_chat < len(rows) else rows[-1]
        user_turn = n % 2 == 0
        batch.append(
            Message(
                chat=chat,
                role=Message.Role.USER if user_turn else Message.Role.ASSISTANT,
                content=corpus.text(5, 30)
                if user_turn
                else " ".join(corpus.text(8, 20) for _ in range(corpus.random.randint(2, 8))),
            )
        )
        if len(batch) == 2000:
            with transaction.atomic():
                Message.objects.bulk_create(batch)
            batch = []
    if batch:
        with transaction.atomic():
            Message.objects.bulk_create(batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE chats_message")
            cursor.execute("VACUUM ANALYZE chats_chat")
    print(f"built {messages:,} messages in {chats:,} chats, {workspaces} workspaces: {time.perf_counter() - started:.1f} s")
    return user, spaces


def queries(words: list[str], count: int, seed: int) -> list[str]:
    pick = random.Random(seed)
    sample = list(Message.objects.order_by("?").values_list("content", flat=True)[:50]) if count else []
    made = []
    for n in range(count):
        kind = n % 10
        if kind in (0, 1, 2):  # a rare word
            made.append(pick.choice(words[len(words) // 3 :]))
        elif kind in (3, 4):  # a word of middling frequency
            made.append(pick.choice(words[50 : len(words) // 3]))
        elif kind in (5, 6):  # two words
            made.append(f"{pick.choice(words[20:400])} {pick.choice(words[100:])}")
        elif kind in (7, 8):  # a phrase from a message
            said = re.findall(r"[a-z]+", pick.choice(sample).lower())
            at = pick.randrange(max(1, len(said) - 1))
            made.append('"' + " ".join(said[at : at + 2]) + '"')
        else:  # a common word: most messages match
            made.append(pick.choice(words[5:30]))
    pick.shuffle(made)
    return made


def run(client: APIClient, spaces: list[Workspace], qs: list[str]) -> tuple[list[float], list[int]]:
    took, found = [], []
    for n, q in enumerate(qs):
        workspace = spaces[n % len(spaces)]
        started = time.perf_counter()
        response = client.get("/api/mothership/search", {"workspace": str(workspace.id), "q": q})
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (q, response.status_code, response.content[:200])
        found.append(len(response.json()["results"]))
    return took, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--workspaces", type=int, default=4)
    parser.add_argument("--chats", type=int, default=2_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    user, spaces = build(messages=args.messages, workspaces=args.workspaces, chats=args.chats)
    client = APIClient(SERVER_NAME="localhost")
    client.force_authenticate(user)
    words = vocabulary()
    run(client, spaces, queries(words, 20, seed=0))  # warm: connections, caches, the first plan
    print(f"{connection.vendor}, {args.messages:,} messages, {args.searches} searches a run (ms):")
    worst = []
    for n in range(args.runs):
        asked = queries(words, args.searches, seed=n + 1)
        took, found = run(client, spaces, asked)
        worst.append(percentile(took, 99))
        print(
            f"  run {n + 1}: p50 {statistics.median(took):.1f}  p99 {percentile(took, 99):.1f}  max {max(took):.1f}"
            f"  (results per page: median {statistics.median(found):.0f}, {sum(1 for f in found if f == 0)} searches found none)"
        )
        slowest = sorted(zip(took, asked, strict=True), reverse=True)[:3]
        print("    slowest: " + ", ".join(f"{q} ({ms:.0f})" for ms, q in slowest))
    print(f"worst p99: {max(worst):.1f} ms")


if __name__ == "__main__":
    main()
