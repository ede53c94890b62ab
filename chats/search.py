"""Full-text search over chat titles and message text, on PostgreSQL and on the embedded SQLite.

PostgreSQL: ``chats_message.search_vector``, a stored generated ``tsvector`` of the content with a
GIN index, and a GIN expression index on the titles; queries go through ``websearch_to_tsquery``,
rank by ``ts_rank`` (titles weigh most) and cut snippets with ``ts_headline`` for one page's rows.
SQLite: an FTS5 table (``chats_search``, one row per title and per message, porter-stemmed; its
``scope`` is the workspace, or "trash") whose rows ``chats_search_doc`` maps to chats and
messages; triggers keep both in step with every insert, update and delete, so a reply is
searchable as soon as its turn writes its text (the seal), and a chat moved to the trash leaves
its workspace's scope. Ranking reads the FTS5 table alone (BM25, at most the newest
``CANDIDATES`` matches of a query). The user's words never reach FTS5 as
syntax: they are parsed here (websearch's grammar: words, "phrases", ``or``, ``-word``) and each
phrase is quoted.

The DDL lives here, not only in migration 0014: SQLite drops a table's triggers when a later
migration rebuilds the table, and ``index_ensure`` (after every ``migrate``) puts them back.
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from chats.models import Chat, Message

QUERY_MAX = 200  # characters of a query
PAGE = 20  # results per page
PAGE_MAX = 50
RESULTS_MAX = 1000  # how deep pages go (ranked results past that are not worth a page)

CONFIG = "english"  # PostgreSQL's text search configuration, the same in the indexes and the queries
SQLITE_TOKENIZER = "porter unicode61 remove_diacritics 2"  # English stemming, as CONFIG does

# Snippets are cut with these around each match, then escaped, then the markers become <mark>:
# message text never becomes markup. Private-use characters, removed from the text indexed.
MARK_START, MARK_END = "\ue000", "\ue001"
TITLE_WEIGHT = 2.0  # SQLite: a title hit counts this many times a message's (PostgreSQL: weight A)
SNIPPET_TOKENS = 24
# SQLite: a query ranks at most this many of its newest matches (a word most messages hold would
# otherwise cost a BM25 score for each of them); a rarer word, or more words, rank every match.
CANDIDATES = 2000


class BadQuery(ValueError):
    """The query has nothing to search for (its message says why)."""


@dataclass(frozen=True)
class Phrase:
    words: tuple[str, ...]
    negated: bool = False

    def fts5(self) -> str:
        # Words are \w+ runs: no quote can be in them, so the quoted phrase is never syntax.
        return '"' + " ".join(self.words) + '"'


@dataclass(frozen=True)
class SearchQuery:
    text: str  # as typed: PostgreSQL's websearch_to_tsquery reads it
    groups: tuple[tuple[Phrase, ...], ...]  # any group matches; in a group, every phrase does

    def fts5(self, *, loose: bool = False) -> str:
        """The same query in FTS5's syntax, every phrase quoted; groups with nothing but
        exclusions are left out (FTS5's NOT needs something to exclude from). ``loose``: every
        word anywhere, nothing left out (what the query's matches are among; cheaper to find)."""
        ors = []
        for group in self.groups:
            wanted = [p.fts5() for p in group if not p.negated]
            if loose:
                wanted = [f'"{word}"' for p in group if not p.negated for word in p.words]
            if wanted:
                unwanted = "" if loose else "".join(f" NOT {p.fts5()}" for p in group if p.negated)
                ors.append("(" + " AND ".join(wanted) + unwanted + ")")
        return " OR ".join(ors)


_TOKEN = re.compile(r'(-?)(?:"([^"]*)"?|([^\s"]+))')
_WORD = re.compile(r"\w+")
NO_WORDS = "Give at least one word to search for (a word after - is left out of the results)."


def parse_query(text: str) -> SearchQuery:
    """websearch's grammar: words (all of them), "a phrase", ``or`` between alternatives, ``-word``
    to leave out. Anything else is punctuation. Raises ``BadQuery`` when nothing is left to find."""
    groups: list[list[Phrase]] = [[]]
    for match in _TOKEN.finditer(text):
        minus, quoted, bare = match.groups()
        if bare is not None and not minus and bare.lower() == "or":
            if groups[-1]:
                groups.append([])
            continue
        if quoted is not None:  # a phrase: its words in this order
            phrases = [tuple(_WORD.findall(quoted))]
        else:  # bare: each word on its own ("NEAR(quokka" is two words, never syntax)
            phrases = [(word,) for word in _WORD.findall(bare)]
        groups[-1].extend(Phrase(words, negated=bool(minus)) for words in phrases if words)
    found = tuple(tuple(group) for group in groups if group)
    if not any(not p.negated for group in found for p in group):
        raise BadQuery(NO_WORDS)
    return SearchQuery(text=text, groups=found)


@dataclass
class SearchHit:
    chat_id: uuid.UUID
    message_id: uuid.UUID | None  # None: the chat's title matched
    title: str
    snippet: str  # HTML: escaped text, the matches in <mark>
    created_at: object


def marked(text: str) -> str:
    """A snippet cut with the markers, as HTML: every character escaped, then the markers as <mark>."""
    return html.escape(text, quote=True).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


def hits(*, workspace_id, query: SearchQuery, offset: int, limit: int) -> list[SearchHit]:
    """One page of the workspace's matches, best first: titles and messages of chats not in the trash."""
    found = _postgres_page if connection.vendor == "postgresql" else _sqlite_page
    rows = found(workspace_id=workspace_id, query=query, offset=offset, limit=limit)  # [(chat, message, snippet)]
    chat_ids = {uuid.UUID(str(chat)) for chat, _, _ in rows}
    message_ids = {uuid.UUID(str(message)) for _, message, _ in rows if message is not None}
    live = Chat.objects.filter(pk__in=chat_ids, deleted_at__isnull=True)  # the trash never, even mid-move
    chats = {c["id"]: c for c in live.values("id", "title", "created_at")}
    written = dict(Message.objects.filter(pk__in=message_ids).values_list("id", "created_at"))
    page = []
    for chat, message, snippet in rows:
        chat_id, message_id = uuid.UUID(str(chat)), uuid.UUID(str(message)) if message is not None else None
        if chat_id not in chats or (message_id is not None and message_id not in written):
            continue  # deleted or moved to the trash between the two reads
        created_at = written[message_id] if message_id else chats[chat_id]["created_at"]
        page.append(SearchHit(chat_id, message_id, chats[chat_id]["title"], marked(snippet or ""), created_at))
    return page


# --- PostgreSQL ---------------------------------------------------------------------------------

# PostgreSQL's parser takes "<quokka>" or "<Button>" for a tag and indexes nothing of it: the
# text is indexed with < and > as spaces (the query's title expression must be the index's).
_VECTOR = f"to_tsvector('{CONFIG}', translate({{}}, '<>', '  '))"
POSTGRES_INSTALL = [
    # Generated: written with the row by whatever UPDATE writes the content (a turn's seal included).
    f"ALTER TABLE chats_message ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({_VECTOR.format('content')}) STORED",
    "CREATE INDEX chats_message_search ON chats_message USING gin (search_vector)",
    # Titles are short: an expression index, and their vector is recomputed for the few that match.
    f"CREATE INDEX chats_chat_search ON chats_chat USING gin (({_VECTOR.format('title')}))",
]
POSTGRES_UNINSTALL = [
    "DROP INDEX IF EXISTS chats_chat_search",
    "DROP INDEX IF EXISTS chats_message_search",
    "ALTER TABLE chats_message DROP COLUMN IF EXISTS search_vector",
]

_TSQUERY = f"websearch_to_tsquery('{CONFIG}', %(q)s)"
# What ts_headline reads: the markers removed (they never come from the text), and < > & as
# entities, or its parser would take anything between < and > for a tag and drop it. The page
# unescapes its answer before ``marked`` escapes it again, with the marks.
_HEADLINE_TEXT = (
    "replace(replace(replace(replace(replace({}, chr(57344), ''), chr(57345), ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"
)
_POSTGRES_PAGE = f"""
WITH hits AS (
    SELECT c.id AS chat_id, NULL::uuid AS message_id, c.created_at AS at,
           ts_rank(setweight({_VECTOR.format("c.title")}, 'A'), {_TSQUERY}, 1) AS rank
    FROM chats_chat c
    WHERE c.workspace_id = %(workspace)s AND c.deleted_at IS NULL AND c.title_set
      AND {_VECTOR.format("c.title")} @@ {_TSQUERY}
    UNION ALL
    SELECT m.chat_id, m.id, m.created_at, ts_rank(m.search_vector, {_TSQUERY}, 1)
    FROM chats_message m JOIN chats_chat c ON c.id = m.chat_id
    WHERE c.workspace_id = %(workspace)s AND c.deleted_at IS NULL AND m.search_vector @@ {_TSQUERY}
), page AS (
    SELECT * FROM hits ORDER BY rank DESC, at DESC, coalesce(message_id, chat_id) DESC
    LIMIT %(limit)s OFFSET %(offset)s
)
SELECT page.chat_id, page.message_id,
       ts_headline('{CONFIG}', {_HEADLINE_TEXT.format("coalesce(m.content, c.title)")}, {_TSQUERY}, %(options)s)
FROM page JOIN chats_chat c ON c.id = page.chat_id LEFT JOIN chats_message m ON m.id = page.message_id
ORDER BY page.rank DESC, page.at DESC, coalesce(page.message_id, page.chat_id) DESC
"""
_HEADLINE_OPTIONS = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords={SNIPPET_TOKENS}, MinWords=12"


def _postgres_page(*, workspace_id, query: SearchQuery, offset: int, limit: int) -> list[tuple]:
    params = {"q": query.text, "workspace": workspace_id, "limit": limit, "offset": offset, "options": _HEADLINE_OPTIONS}
    with connection.cursor() as cursor:
        cursor.execute(_POSTGRES_PAGE, params)
        return [(chat, message, html.unescape(headline)) for chat, message, headline in cursor.fetchall()]


# --- SQLite -------------------------------------------------------------------------------------

_CLEAN = "replace(replace({}, char(57344), ''), char(57345), '')"  # the markers never come from the text
_TITLE = _CLEAN.format("CASE WHEN {0}.title_set THEN {0}.title ELSE '' END")  # "New chat" is no title
# A row's scope, one token: "t" (a title) or "m" (a message) and its workspace's id, or "trash"
# while its chat is in the trash. A search reads its workspace's titles or messages with one
# token (never the trash), and ranks nothing but the FTS5 table.
_SCOPE = "CASE WHEN {0}.deleted_at IS NULL THEN {1} || {0}.workspace_id ELSE 'trash' END"

SQLITE_TABLES = [
    # One row per title (message_id NULL) and per message: the FTS5 rows' ids, stable across VACUUM.
    "CREATE TABLE IF NOT EXISTS chats_search_doc (id INTEGER PRIMARY KEY, chat_id char(32) NOT NULL, message_id char(32))",
    "CREATE UNIQUE INDEX IF NOT EXISTS chats_search_doc_message ON chats_search_doc (message_id)",
    "CREATE INDEX IF NOT EXISTS chats_search_doc_chat ON chats_search_doc (chat_id, message_id)",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS chats_search USING fts5(body, scope, tokenize = '{SQLITE_TOKENIZER}')",
]
SQLITE_TRIGGERS = {
    "chats_search_chat_insert": f"""AFTER INSERT ON chats_chat BEGIN
        INSERT INTO chats_search_doc (chat_id, message_id) VALUES (new.id, NULL);
        INSERT INTO chats_search (rowid, body, scope) VALUES (last_insert_rowid(), {_TITLE.format("new")}, {_SCOPE.format("new", "'t'")});
    END""",
    "chats_search_chat_title": f"""AFTER UPDATE OF title, title_set ON chats_chat BEGIN
        UPDATE chats_search SET body = {_TITLE.format("new")}
        WHERE rowid = (SELECT id FROM chats_search_doc WHERE chat_id = new.id AND message_id IS NULL);
    END""",
    "chats_search_chat_trash": f"""AFTER UPDATE OF deleted_at, workspace_id ON chats_chat BEGIN
        UPDATE chats_search SET scope = (SELECT {_SCOPE.format("new", "CASE WHEN d.message_id IS NULL THEN 't' ELSE 'm' END")})
        FROM chats_search_doc d WHERE d.chat_id = new.id AND chats_search.rowid = d.id;
    END""",
    "chats_search_chat_delete": """AFTER DELETE ON chats_chat BEGIN
        DELETE FROM chats_search WHERE rowid IN (SELECT id FROM chats_search_doc WHERE chat_id = old.id);
        DELETE FROM chats_search_doc WHERE chat_id = old.id;
    END""",
    "chats_search_message_insert": f"""AFTER INSERT ON chats_message BEGIN
        INSERT INTO chats_search_doc (chat_id, message_id) VALUES (new.chat_id, new.id);
        INSERT INTO chats_search (rowid, body, scope) VALUES (
            last_insert_rowid(), {_CLEAN.format("new.content")}, (SELECT {_SCOPE.format("c", "'m'")} FROM chats_chat c WHERE c.id = new.chat_id));
    END""",
    # A turn's seal writes its reply's text by an UPDATE: from then on the reply is found.
    "chats_search_message_content": f"""AFTER UPDATE OF content ON chats_message WHEN old.content IS NOT new.content BEGIN
        UPDATE chats_search SET body = {_CLEAN.format("new.content")}
        WHERE rowid = (SELECT id FROM chats_search_doc WHERE message_id = new.id);
    END""",
    "chats_search_message_delete": """AFTER DELETE ON chats_message BEGIN
        DELETE FROM chats_search WHERE rowid = (SELECT id FROM chats_search_doc WHERE message_id = old.id);
        DELETE FROM chats_search_doc WHERE message_id = old.id;
    END""",
}
SQLITE_TRIGGER_NAMES = tuple(SQLITE_TRIGGERS)
SQLITE_REBUILD = [
    "DELETE FROM chats_search",
    "DELETE FROM chats_search_doc",
    # Titles, then messages oldest first: a newer message has a higher row id (newest matches first).
    "INSERT INTO chats_search_doc (chat_id, message_id) SELECT id, NULL FROM chats_chat ORDER BY created_at",
    "INSERT INTO chats_search_doc (chat_id, message_id) SELECT chat_id, id FROM chats_message ORDER BY created_at, id",
    f"""INSERT INTO chats_search (rowid, body, scope)
        SELECT d.id, CASE WHEN d.message_id IS NULL THEN {_TITLE.format("c")} ELSE {_CLEAN.format("m.content")} END,
               {_SCOPE.format("c", "CASE WHEN d.message_id IS NULL THEN 't' ELSE 'm' END")}
        FROM chats_search_doc d JOIN chats_chat c ON c.id = d.chat_id LEFT JOIN chats_message m ON m.id = d.message_id""",
]
SQLITE_UNINSTALL = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS),
    "DROP TABLE IF EXISTS chats_search",
    "DROP TABLE IF EXISTS chats_search_doc",
]


def sqlite_install(execute) -> None:
    """The FTS5 table, its triggers, and every existing title and message indexed."""
    for statement in SQLITE_TABLES:
        execute(statement)
    for name, body in SQLITE_TRIGGERS.items():
        execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
    for statement in SQLITE_REBUILD:
        execute(statement)


def index_ensure(using: str = DEFAULT_DB_ALIAS) -> bool:
    """SQLite: put back triggers that a table rebuild dropped and index again what they missed.
    True when something was repaired (PostgreSQL's generated column needs no repair: False)."""
    db = connections[using]
    if db.vendor != "sqlite":
        return False
    with db.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'chats_search_%'")
        present = {name for (name,) in cursor.fetchall()}
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'chats_search'")
        installed = cursor.fetchone() is not None
    if not installed or present >= set(SQLITE_TRIGGERS):
        return False  # not migrated yet (0014 installs it), or whole
    with transaction.atomic(using=using), db.cursor() as cursor:
        sqlite_install(cursor.execute)
    return True


def index_ensure_after_migrate(sender, using=DEFAULT_DB_ALIAS, **kwargs) -> None:
    """``post_migrate`` (connected in ``ChatsConfig.ready``)."""
    index_ensure(using)


def index_rows(*, chat_ids) -> int:
    """How many titles and messages of these chats the index holds (what a purge must leave: 0)."""
    ids = [uuid.UUID(str(pk)) for pk in chat_ids]
    if connection.vendor == "postgresql":
        titles = Chat.objects.filter(pk__in=ids).count()
        return titles + Message.objects.filter(chat_id__in=ids).count()  # the vector is part of the row
    with connection.cursor() as cursor:
        marks = ", ".join(["%s"] * len(ids))
        cursor.execute(
            f"SELECT count(*) FROM chats_search WHERE rowid IN (SELECT id FROM chats_search_doc WHERE chat_id IN ({marks}))",
            [pk.hex for pk in ids],
        )
        return cursor.fetchone()[0]


def _sqlite_ranked(cursor, scope: str, query: SearchQuery, count: int) -> list[tuple[int, float]]:
    """The ``count`` best rows of ``scope`` that match, among the newest ``CANDIDATES`` that hold
    its words: (row id, score), best first. Only the FTS5 table is read; the bound keeps a word
    that most messages hold, or a phrase of such words, about as cheap as a rare one."""
    cursor.execute(
        "SELECT rowid FROM chats_search WHERE chats_search MATCH %s ORDER BY rowid DESC LIMIT 1 OFFSET %s",
        [f'scope : "{scope}" AND body : ({query.fts5(loose=True)})', CANDIDATES - 1],
    )
    bound = cursor.fetchone()
    newest = " AND rowid >= %s" if bound else ""
    cursor.execute(
        "SELECT rowid, -bm25(chats_search, 1.0, 0.0) AS score FROM chats_search"
        f" WHERE chats_search MATCH %s{newest} ORDER BY score DESC, rowid DESC LIMIT %s",
        [f'scope : "{scope}" AND body : ({query.fts5()})', *(bound or ()), count],
    )
    return cursor.fetchall()


def _sqlite_page(*, workspace_id, query: SearchQuery, offset: int, limit: int) -> list[tuple]:
    workspace, words = uuid.UUID(str(workspace_id)).hex, f"body : ({query.fts5()})"
    with connection.cursor() as cursor:
        # Titles and messages ranked apart (a title is a few words: BM25 would take it for a short
        # message), then merged, a title counting TITLE_WEIGHT times.
        titles = _sqlite_ranked(cursor, f"t{workspace}", query, offset + limit)
        messages = _sqlite_ranked(cursor, f"m{workspace}", query, offset + limit)
        merged = sorted([(score * TITLE_WEIGHT, rowid) for rowid, score in titles] + [(s, r) for r, s in messages], reverse=True)
        page = [rowid for _score, rowid in merged[offset : offset + limit]]
        if not page:
            return []
        marks = ", ".join(["%s"] * len(page))
        cursor.execute(f"SELECT id, chat_id, message_id FROM chats_search_doc WHERE id IN ({marks})", page)
        docs = {row[0]: row[1:] for row in cursor.fetchall()}
        # Snippets for this page's rows only.
        cursor.execute(
            f"SELECT rowid, snippet(chats_search, 0, %s, %s, '…', {SNIPPET_TOKENS}) FROM chats_search"
            f" WHERE chats_search MATCH %s AND rowid IN ({marks})",
            [MARK_START, MARK_END, words, *page],
        )
        snippets = dict(cursor.fetchall())
    return [(*docs[rowid], snippets.get(rowid, "")) for rowid in page if rowid in docs]
