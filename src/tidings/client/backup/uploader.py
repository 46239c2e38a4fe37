"""Continuous upload: changed history spans, the account secrets and the manifest, sealed and
stored in the vault in bounded, resumable steps.

Guarantees, first: every call stores whole pages (an upload call is one transaction on the
server), a page's generation grows with every re-seal, and the local bookkeeping (generation,
plaintext digest, ``vault_dirty``) changes only after the server acknowledged — a client killed
mid-upload leaves the vault with complete pages of the last or the new generation, and the next
run finds the same spans dirty and uploads them again (re-sealing with a generation above any
the server holds: the first run of a process reads the server's list). The manifest page
(:data:`MANIFEST_PAGE_ID`: every page id with its generation) is uploaded *after* the pages it
names, so a restoring device never meets a manifest that names a page not yet stored; it
refuses pages older than the manifest says (partial rollback). A span whose rows were partly
removed locally (retention) is merged with its vault copy before it is re-sealed, with the
reactions stored since for its messages no longer on the device. Unsent messages go to their
own page (:mod:`.pending`); a message too large even for an oversized page is left out alone.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from tidings.crypto.vault import open_page, seal_page
from tidings.protocol import vault as wire

from ..store import LocalStore
from . import local
from .pages import (
    MessageRecord,
    PageError,
    Reaction,
    encode_page,
    fits,
    history_page_id,
    open_history_page,
    pack_pages,
)
from .pending import PENDING_PAGE_ID, encode_pending
from .records import pending_records, reactions_of, span_records
from .secrets import (
    SECRETS_PAGE_ID,
    AccountSecrets,
    ContactIdentity,
    ConversationSettings,
    encode_secrets,
)
from .vault_client import UPLOAD_BYTES, UPLOAD_PAGES, VaultApi

log = logging.getLogger(__name__)

MANIFEST_PAGE_ID = "account/manifest"
#: spans sealed per run of :meth:`Uploader.run` (bounded work per wake-up)
SPANS_PER_RUN = 200

_manifest_encoder = msgspec.msgpack.Encoder()
_manifest_decoder = msgspec.msgpack.Decoder(list[tuple[str, int]])


def encode_manifest(pages: dict[str, int]) -> bytes:
    return _manifest_encoder.encode(sorted(pages.items()))


def decode_manifest(data: bytes) -> dict[str, int]:
    return dict(_manifest_decoder.decode(data))


def parse_history_id(page_id: str) -> tuple[str, int] | None:
    """(conversation, page index) of a history page id, None for other pages."""
    parts = page_id.split("/")
    if len(parts) != 3 or parts[0] != "h" or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def account_secrets(store: LocalStore) -> AccountSecrets:
    """The account secrets record as this device knows them now."""
    account = store.account()
    assert account is not None
    db = store.db
    contacts = [
        ContactIdentity(str(a), bytes(k), bool(v), bool(b))
        for a, k, v, b in db.execute(
            "SELECT account_id, identity_key, verified, blocked FROM e2ee_identities"
            " ORDER BY account_id"
        )
    ]
    conversations = [
        ConversationSettings(conv_id=str(c), extra=_manifest_encoder.encode([int(r)]))
        for c, r in db.execute("SELECT id, read_upto FROM conversations ORDER BY id")
    ]
    return AccountSecrets(
        account_id=account.account_id,
        username=account.username,
        server_url=account.server_url,
        identity=store.keys.get_identity_key_pair().serialize(),
        registration_id=store.keys.get_local_registration_id(),
        contacts=contacts,
        conversations=conversations,
    )


@dataclass(slots=True)
class _Pending:
    page: wire.VaultPage
    digest: bytes | None
    span: tuple[str, int, int, int] | None


class Uploader:
    def __init__(self, store: LocalStore, api: VaultApi, vault_key: bytes) -> None:
        self.store = store
        self.api = api
        self.vault_key = vault_key
        account = store.account()
        assert account is not None
        self.account_id = account.account_id
        self._synced = False

    @property
    def db(self) -> sqlite3.Connection:
        return self.store.db

    def _digests(self) -> dict[str, bytes | None]:
        return {
            str(r[0]): None if r[1] is None else bytes(r[1])
            for r in self.db.execute("SELECT page_id, digest FROM vault_uploaded")
        }

    async def _sync_generations(self) -> None:
        """Take the server's generations where they are ahead (an upload whose answer was
        lost, e.g. the process was killed): the next seal goes above them."""
        known = local.generations(self.db)
        for page_id, (generation, _size) in (await self.api.list()).items():
            if generation > known.get(page_id, -1):
                self.db.execute(
                    "INSERT INTO vault_uploaded (page_id, generation) VALUES (?, ?)"
                    " ON CONFLICT DO UPDATE SET generation = excluded.generation, digest = NULL",
                    (page_id, generation),
                )
        self._synced = True

    def pending_spans(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM vault_dirty").fetchone()[0])

    async def run(self, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Upload what changed, at most :data:`SPANS_PER_RUN` spans; pages uploaded."""
        if not self._synced:
            await self._sync_generations()
        generations = local.generations(self.db)
        digests = self._digests()
        pending: list[_Pending] = []

        def add(page_id: str, data: bytes, span: tuple[str, int, int, int] | None) -> None:
            digest = hashlib.sha256(data).digest()
            if digests.get(page_id) == digest:
                return
            generation = generations.get(page_id, 0) + 1
            sealed = seal_page(
                self.vault_key, self.account_id, page_id, data, generation=generation
            )
            pending.append(_Pending(wire.VaultPage(page_id, generation, sealed), digest, span))

        add(SECRETS_PAGE_ID, encode_secrets(account_secrets(self.store)), None)
        unsent = pending_records(self.db)
        if unsent or PENDING_PAGE_ID in generations:
            add(PENDING_PAGE_ID, encode_pending([r for r in unsent if fits(r)]), None)
        dirty = self.db.execute(
            "SELECT conv_id, span, n FROM vault_dirty ORDER BY conv_id, span LIMIT ?",
            (SPANS_PER_RUN,),
        ).fetchall()
        for conv_id, span, _n in dirty:
            for page in await self._span_pages(conv_id, span):
                first = page.messages[0].seq or 0
                last = page.messages[-1].seq or 0
                add(
                    history_page_id(conv_id, page.index),
                    encode_page(page),
                    (conv_id, span, first, last),
                )
        uploaded = await self._upload(pending, on_progress)
        for conv_id, span, n in dirty:
            self.db.execute(
                "DELETE FROM vault_dirty WHERE conv_id = ? AND span = ? AND n = ?",
                (conv_id, span, n),
            )
        if any(p.span is not None for p in pending):
            generations = local.generations(self.db)
            manifest = {k: v for k, v in generations.items() if k != MANIFEST_PAGE_ID}
            before = len(pending)
            add(MANIFEST_PAGE_ID, encode_manifest(manifest), None)
            uploaded += await self._upload(pending[before:], None)
        return uploaded

    async def _span_pages(self, conv_id: str, span: int) -> list:  # type: ignore[type-arg]
        first, last = span * local.SPAN + 1, (span + 1) * local.SPAN
        records = span_records(self.db, conv_id, first, last)
        if local.pruned_below(self.db, conv_id) > first:
            merged = {r.id: r for r in await self.download_span(conv_id, span)}
            gone = [i for i in merged if i not in {r.id for r in records}]
            for message_id, added in reactions_of(self.db, gone).items():
                merged[message_id] = _with_reactions(merged[message_id], added)
            merged.update((r.id, r) for r in records)
            records = sorted(merged.values(), key=lambda r: r.seq or 0)
        kept = [r for r in records if fits(r)]
        if len(kept) < len(records):
            log.warning(
                "%d messages of %s are too large for the vault", len(records) - len(kept), conv_id
            )
        try:
            return pack_pages(conv_id, kept, start_index=span * local.PARTS)
        except PageError:
            log.warning("a span of %s does not fit in vault pages; not backed up", conv_id)
            return []

    async def download_span(self, conv_id: str, span: int) -> list[MessageRecord]:
        """The records of one span as the vault holds them (authenticated)."""
        ids = [p for p, _s, _f, _l in local.span_pages(self.db, conv_id) if _s == span]
        out: list[MessageRecord] = []
        generations = local.generations(self.db)
        for page_id, page in (await self.api.fetch(ids)).items():
            parsed = parse_history_id(page_id)
            assert parsed is not None
            history, _gen = open_history_page(
                self.vault_key, self.account_id, parsed[0], parsed[1], page.sealed,
                min_generation=generations.get(page_id, 0),
            )  # fmt: skip
            out.extend(history.messages)
        return out

    async def _upload(
        self, pending: list[_Pending], on_progress: Callable[[int, int], None] | None
    ) -> int:
        done = 0
        batch: list[_Pending] = []
        size = 0
        for item in [*pending, None]:
            if (
                item is not None
                and len(batch) < UPLOAD_PAGES
                and size + len(item.page.sealed) <= UPLOAD_BYTES
            ):
                batch.append(item)
                size += len(item.page.sealed)
                continue
            if batch:
                await self.api.put([b.page for b in batch])
                with self.store.transaction():
                    for b in batch:
                        local.record_upload(self.db, b.page.id, b.page.generation, b.digest, b.span)
                done += len(batch)
                if on_progress is not None:
                    on_progress(done, len(pending))
            batch, size = ([item], len(item.page.sealed)) if item is not None else ([], 0)
        return done


def _with_reactions(record: MessageRecord, added: list[Reaction]) -> MessageRecord:
    """``record`` with the reactions stored locally since it left the device: they win over
    the vault copy's for the same account and emoji."""
    known = {(r.sender, r.emoji) for r in added}
    kept = [r for r in record.reactions if (r.sender, r.emoji) not in known]
    merged = sorted([*kept, *added], key=lambda r: (r.ts, r.sender, r.emoji))
    return msgspec.structs.replace(record, reactions=merged)


def open_manifest(vault_key: bytes, account_id: str, sealed: bytes) -> dict[str, int]:
    return decode_manifest(open_page(vault_key, account_id, MANIFEST_PAGE_ID, sealed).plaintext)
