"""Local retention and lazy loading: the newest N messages per conversation stay on the device,
older ones live in the vault and come back when the user scrolls or searches that far.

Guarantees, first: a row is removed locally only when its span is in the vault as it is now
(not in ``vault_dirty``) and it is not among the newest ``keep`` rows with a seq of its
conversation; unsent messages are never removed; its reactions, attachment pointers and FTS5
row go with it (the FTS row by the store's trigger). Pages read back from the vault are
authenticated and checked against the generation this device knows (a rolled-back or
tampered page raises, it is never shown) and cached in memory, not written back.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections import OrderedDict

from tidings.crypto.errors import TamperedPage

from ..store import LocalStore
from ..types import Message, MessageStatus, Page, SearchHit
from . import local
from .pages import MessageRecord, open_history_page
from .uploader import parse_history_id
from .vault_client import VaultApi

#: spans kept in memory after loading
CACHE_SPANS = 64


def prune(store: LocalStore, keep: int) -> int:
    """Remove rows beyond the newest ``keep`` per conversation that are safely in the vault;
    how many were removed."""
    db = store.db
    removed = 0
    for (conv_id,) in db.execute("SELECT DISTINCT conv_id FROM messages").fetchall():
        row = db.execute(
            "SELECT seq FROM messages WHERE conv_id = ? AND seq IS NOT NULL ORDER BY seq DESC"
            " LIMIT 1 OFFSET ?",
            (conv_id, keep),
        ).fetchone()
        if row is None:
            continue
        cutoff = int(row[0])
        dirty = db.execute(
            "SELECT min(span) FROM vault_dirty WHERE conv_id = ?", (conv_id,)
        ).fetchone()[0]
        if dirty is not None:
            cutoff = min(cutoff, int(dirty) * local.SPAN)
        if cutoff < 1:
            continue
        with store.transaction():
            rows = db.execute(
                "SELECT id, seq FROM messages WHERE conv_id = ? AND seq IS NOT NULL AND seq <= ?",
                (conv_id, cutoff),
            ).fetchall()
            if not rows:
                continue
            ids = [r[0] for r in rows]
            # where each went: a later reaction to it is merged into its vault page
            db.executemany(
                "INSERT OR REPLACE INTO vault_pruned_ids VALUES (?, ?, ?)",
                [(mid, conv_id, seq) for mid, seq in rows],
            )
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for table in ("reactions", "attachments"):
                    db.execute(f"DELETE FROM {table} WHERE message_id IN ({marks})", chunk)  # noqa: S608
                db.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)  # noqa: S608
            db.execute(
                "INSERT INTO vault_pruned VALUES (?, ?) ON CONFLICT DO UPDATE"
                " SET below_seq = max(below_seq, excluded.below_seq)",
                (conv_id, cutoff + 1),
            )
            removed += len(ids)
    return removed


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class VaultHistory:
    """Older history read from the vault, shaped like the local store's pages."""

    def __init__(self, store: LocalStore, api: VaultApi, vault_key: bytes) -> None:
        self.store = store
        self.api = api
        self.vault_key = vault_key
        account = store.account()
        assert account is not None
        self.account_id = account.account_id
        self._cache: OrderedDict[tuple[str, int], list[MessageRecord]] = OrderedDict()

    def forget(self) -> None:
        """Drop the cached spans (their pages were re-uploaded)."""
        self._cache.clear()

    def _spans(self, conv_id: str) -> dict[int, list[str]]:
        spans: dict[int, list[str]] = {}
        for page_id, span, _first, _last in local.span_pages(self.store.db, conv_id):
            spans.setdefault(span, []).append(page_id)
        return spans

    async def load_span(self, conv_id: str, span: int, page_ids: list[str]) -> list[MessageRecord]:
        cached = self._cache.get((conv_id, span))
        if cached is not None:
            self._cache.move_to_end((conv_id, span))
            return cached
        generations = local.generations(self.store.db)
        records: list[MessageRecord] = []
        fetched = await self.api.fetch(page_ids)
        for page_id in page_ids:
            page = fetched.get(page_id)
            if page is None:
                raise TamperedPage(f"page {page_id!r} is missing from the vault")
            parsed = parse_history_id(page_id)
            assert parsed is not None
            history, _generation = open_history_page(
                self.vault_key, self.account_id, parsed[0], parsed[1], page.sealed,
                min_generation=generations.get(page_id, 0),
            )  # fmt: skip
            records.extend(history.messages)
        records.sort(key=lambda r: r.seq or 0)
        self._cache[(conv_id, span)] = records
        while len(self._cache) > CACHE_SPANS:
            self._cache.popitem(last=False)
        return records

    def _message(self, record: MessageRecord, read_upto: int) -> Message:
        store = self.store
        grouped: dict[str, list[str]] = {}
        for reaction in record.reactions:
            grouped.setdefault(reaction.emoji, []).append(
                store.username(reaction.sender) or reaction.sender
            )
        is_own = record.sender == self.account_id
        status = record.status
        if not is_own:
            status = "read" if record.seq is not None and record.seq <= read_upto else "delivered"
        body = record.body
        if record.kind == "system" and record.meta is not None:
            body = store._system_sentence(record.meta)
        return Message(
            id=uuid.UUID(record.id),
            conv_id=record.conv_id,
            seq=record.seq,
            sender_id=record.sender,
            sender_name=store.username(record.sender) or record.sender,
            is_own=is_own,
            kind=record.kind
            if record.kind in ("text", "system", "undecryptable", "identity_changed")
            else "system",  # type: ignore[arg-type]
            body=body,
            reply_to=uuid.UUID(record.reply_to) if record.reply_to else None,
            reply_preview=None,
            reactions=tuple((e, tuple(w)) for e, w in grouped.items()),
            status=MessageStatus(status),
            fail_reason=None,
            created_at=record.ts,
        )

    async def older(
        self, conv_id: str, below: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Up to ``limit`` messages with seq < ``below`` (all if None), oldest first, and
        whether the vault has more below them."""
        spans = self._spans(conv_id)
        if not spans:
            return [], False
        top = max(spans) if below is None else min(max(spans), (below - 2) // local.SPAN)
        read_upto = self.store.read_upto(conv_id)
        found: list[MessageRecord] = []
        span = top
        while span >= 0 and len(found) <= limit:
            if span in spans:
                records = await self.load_span(conv_id, span, spans[span])
                found = [r for r in records if below is None or (r.seq or 0) < below] + found
            span -= 1
        more = len(found) > limit or any(s <= span for s in spans)
        chosen = found[-limit:]
        return [self._message(r, read_upto) for r in chosen], more

    async def page(self, conv_id: str, before: int | None, limit: int, local_page: Page) -> Page:
        """``local_page`` completed from the vault: the same shape. Only a page that reaches
        the end of the local rows asks the vault (then vault and local rows are merged by
        seq: a linked device holds newer rows locally and a gap below them)."""
        if local_page.before is not None:
            return local_page
        older, more = await self.older(conv_id, before, limit)
        if not older:
            return local_page
        merged = {m.id: m for m in older}
        merged.update((m.id, m) for m in local_page.messages)
        ordered = sorted(merged.values(), key=lambda m: m.seq if m.seq is not None else 1 << 62)
        chosen = ordered[-limit:]
        more = more or len(ordered) > limit
        oldest = chosen[0].seq
        return Page(tuple(chosen), oldest if more and oldest is not None else None)

    async def search(self, query: str, limit: int) -> list[SearchHit]:
        """Every vault page searched for every word of ``query`` (the last as a prefix)."""
        words = [_fold(w) for w in query.split()]
        if not words:
            return []
        hits: list[SearchHit] = []
        convs = [r[0] for r in self.store.db.execute(
            "SELECT DISTINCT conv_id FROM vault_uploaded WHERE conv_id IS NOT NULL"
        )]  # fmt: skip
        local_ids = {r[0] for r in self.store.db.execute("SELECT id FROM messages")}
        for conv_id in convs:
            read_upto = self.store.read_upto(conv_id)
            for span, page_ids in sorted(self._spans(conv_id).items(), reverse=True):
                for record in reversed(await self.load_span(conv_id, span, page_ids)):
                    if record.id in local_ids or record.kind != "text":
                        continue
                    folded = _fold(record.body)
                    if all(w in folded for w in words):
                        at = folded.find(words[0])
                        end = at + len(words[0])
                        snippet = (
                            record.body[max(0, at - 30) : at] + "[" + record.body[at:end] + "]"
                        )
                        snippet += record.body[end : end + 30]
                        hits.append(SearchHit(self._message(record, read_upto), snippet))
                        if len(hits) >= limit:
                            return hits
        return hits
