"""Message search with FTS5 where SQLite has it, and a scan where it does not.

python-for-android's stock ``sqlite3`` recipe is built without FTS5 (ours adds it, see
docs/android.md), and other SQLite builds may lack it as well. The store therefore checks at
open whether it can create an FTS5 table (:func:`fts5_available`): if so, the ``messages_fts``
index and the triggers that keep it in step with ``messages`` are made (and rebuilt from the
messages if a store without them was opened with FTS5 before); if not, the triggers are dropped
(an FTS5 table left by an earlier run is never touched: a SQLite without the module cannot) and
:func:`scan` searches the bodies directly. Both give the same hits for the same query: every
word must match a word of the body (the last as a prefix), case- and accent-insensitively,
most recently stored first, with a snippet marking the matches with ``[`` ``]``.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
import uuid
from typing import Literal

from tidings.migrations import statements

SearchMode = Literal["fts5", "scan"]

#: the index and its triggers (FTS5 only); made when missing, also on existing stores
INDEX = """
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    body, content='messages', content_rowid='pk', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.pk, new.body);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.pk, old.body);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.pk, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.pk, new.body);
END;
"""
TRIGGERS = ("messages_fts_insert", "messages_fts_delete", "messages_fts_update")
#: tokens of context around the first match in a scan's snippet (FTS5's snippet uses 12)
SNIPPET_TOKENS = 12
#: rows the scan reads per step
_CHUNK = 500
_WORD = re.compile(r"\w+")


def fts5_available(db: sqlite3.Connection) -> bool:
    """Whether this connection can make FTS5 tables (a throwaway one in ``temp``)."""
    try:
        db.execute("CREATE VIRTUAL TABLE temp.tidings_fts5_probe USING fts5(x)")
    except sqlite3.DatabaseError:
        return False
    db.execute("DROP TABLE temp.tidings_fts5_probe")
    return True


def prepare(db: sqlite3.Connection) -> SearchMode:
    """Make the store's search fit this SQLite; returns the mode (after the migrations)."""
    triggers = {
        row[0]
        for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        if row[0] in TRIGGERS
    }
    if fts5_available(db):
        if len(triggers) < len(TRIGGERS):  # new, or written by a SQLite without FTS5
            db.execute("BEGIN IMMEDIATE")
            try:
                for name in triggers:
                    db.execute(f"DROP TRIGGER {name}")
                for statement in statements(INDEX):
                    db.execute(statement)
                db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return "fts5"
    if triggers:  # they would fail every write to messages ("no such module: fts5")
        db.execute("BEGIN IMMEDIATE")
        for name in triggers:
            db.execute(f"DROP TRIGGER {name}")
        db.execute("COMMIT")
    return "scan"


def fold(text: str) -> str:
    """Case- and accent-insensitive form of ``text`` (as unicode61 remove_diacritics 2)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fts_query(query: str) -> str | None:
    """The FTS5 MATCH expression for ``query``, or None for a query without words."""
    words = query.split()
    if not words:
        return None
    return " ".join('"' + w.replace('"', '""') + '"' for w in words) + "*"


def _terms(query: str) -> tuple[list[str], str] | None:
    tokens = _WORD.findall(fold(query))
    if not tokens:
        return None
    return tokens[:-1], tokens[-1]


def _matches(tokens: list[str], whole: list[str], prefix: str) -> list[int]:
    """Indexes of the matching tokens, or [] unless every term matches."""
    hits = [i for i, t in enumerate(tokens) if t in whole or t.startswith(prefix)]
    found = {tokens[i] for i in hits}
    if not all(w in found for w in whole) or not any(t.startswith(prefix) for t in found):
        return []
    return hits


def _snippet(body: str, whole: list[str], prefix: str) -> str | None:
    spans = [(m.start(), m.end(), fold(m.group())) for m in _WORD.finditer(body)]
    hits = _matches([s[2] for s in spans], whole, prefix)
    if not hits:
        return None
    start = max(0, hits[0] - SNIPPET_TOKENS + 1)  # the first window holding a match
    end = min(len(spans), start + SNIPPET_TOKENS)
    marked = set(hits)
    out = "…" if start > 0 else ""
    cursor = spans[start][0]
    for i in range(start, end):
        a, b, _ = spans[i]
        out += body[cursor:a] + (f"[{body[a:b]}]" if i in marked else body[a:b])
        cursor = b
    return out + (body[cursor:] if end == len(spans) else "…")


def scan(db: sqlite3.Connection, query: str, limit: int) -> list[tuple[uuid.UUID, str]]:
    """(message id, snippet) of the newest ``limit`` messages matching ``query``, read from
    the bodies, newest stored first: the FTS5 search's results without FTS5."""
    terms = _terms(query)
    if terms is None or limit <= 0:
        return []
    whole, prefix = terms
    found: list[tuple[uuid.UUID, str]] = []
    below = 1 << 62
    while len(found) < limit:
        rows = db.execute(
            "SELECT pk, id, body FROM messages WHERE pk < ? ORDER BY pk DESC LIMIT ?",
            (below, _CHUNK),
        ).fetchall()
        if not rows:
            break
        for pk, message_id, body in rows:
            below = pk
            snippet = _snippet(str(body or ""), whole, prefix) if body else None
            if snippet is not None:
                found.append((uuid.UUID(message_id), snippet))
                if len(found) == limit:
                    break
    return found
