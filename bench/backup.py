"""Backup benchmark: Argon2id at the chosen params, vault upload rate, restore time and the
time to load one older page, on the client side (sealing, packing, SQLite), with the vault's
REST calls answered by an in-memory server (the network is not what is measured here).

``python -m bench.backup [--quick]`` prints JSON; ``make bench`` runs it as the ``backup`` part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidings.client.backup import local
from tidings.client.backup.pages import MessageRecord, Reaction
from tidings.client.backup.records import insert_records
from tidings.client.backup.recovery import adopt_vault
from tidings.client.backup.retention import VaultHistory, prune
from tidings.client.backup.uploader import Uploader
from tidings.client.store import LocalStore
from tidings.client.types import Account, Page
from tidings.crypto import IdentityKeyPair
from tidings.crypto.vault import derive_vault_secrets, enrol, new_kdf_params
from tidings.protocol import vault as wire

Json = dict[str, Any]
ACCOUNT = "a-bench"


class MemoryVault:
    """The vault routes' semantics, in memory."""

    def __init__(self) -> None:
        self.pages: dict[str, wire.VaultPage] = {}

    async def put(self, pages: Sequence[wire.VaultPage]) -> wire.VaultStatus:
        for page in pages:
            self.pages[page.id] = page
        return wire.VaultStatus(enrolled=True, pages=len(self.pages))

    async def list(self) -> dict[str, tuple[int, int]]:
        return {k: (p.generation, len(p.sealed)) for k, p in self.pages.items()}

    async def fetch(self, ids: Sequence[str]) -> dict[str, wire.VaultPage]:
        return {i: self.pages[i] for i in ids if i in self.pages}

    async def fetch_all(self, ids: Sequence[str]) -> dict[str, wire.VaultPage]:
        """Every page asked for, as the vault client's own ``fetch_all`` insists."""
        return {i: self.pages[i] for i in ids}


def _store(path: Path) -> LocalStore:
    store = LocalStore(path)
    store.set_account(Account(ACCOUNT, "alice", 1, "http://127.0.0.1:1"))
    store.keys.set_identity(IdentityKeyPair.generate())
    local.install(store.db)
    return store


def _records(count: int) -> list[MessageRecord]:
    return [
        MessageRecord(
            id=uuid.UUID(int=i + 1).hex,
            conv_id="c1",
            seq=i + 1,
            sender=ACCOUNT if i % 2 else "a-bob",
            sender_device=1,
            ts=1_700_000_000_000 + i,
            kind="text",
            body=f"message {i} about nothing in particular, long enough to be typical",
            status="read",
            reactions=[Reaction("a-bob", "👍", 1_700_000_000_000 + i)] if i % 10 == 0 else [],
        )
        for i in range(count)
    ]


async def _measure(quick: bool, work: Path) -> Json:
    count = 10_000 if quick else 100_000
    params = new_kdf_params()
    started = time.perf_counter()
    derive_vault_secrets("violet tundra parsnip 91 ocelot", params)
    argon2_s = time.perf_counter() - started
    enrolment = enrol("violet tundra parsnip 91 ocelot", ACCOUNT)

    source = _store(work / "source.db")
    with source.transaction():
        insert_records(source.db, ACCOUNT, _records(count))
    vault = MemoryVault()
    uploader = Uploader(source, vault, enrolment.vault_key)  # type: ignore[arg-type]
    started = time.perf_counter()
    pages = 0
    while True:
        pages += await uploader.run()
        if uploader.pending_spans() == 0:
            break
    upload_s = time.perf_counter() - started

    target = _store(work / "target.db")
    started = time.perf_counter()
    restored = await adopt_vault(
        target,
        vault,
        enrolment.vault_key,
        enrolment.wrapped,
        keep=count,
        restore=True,  # type: ignore[arg-type]
    )
    restore_s = time.perf_counter() - started

    prune(target, 1000)
    reader = VaultHistory(target, vault, enrolment.vault_key)  # type: ignore[arg-type]
    empty = Page((), None)
    samples = []
    for below in range(count // 2, count // 2 - 20 * local.SPAN, -local.SPAN):
        reader._cache.clear()
        started = time.perf_counter()
        await reader.page("c1", below, 50, empty)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "messages": count,
        "argon2id_s": round(argon2_s, 3),
        "argon2id_params": f"m={params.m_cost_kib} KiB, t={params.t_cost}, p={params.parallelism}",
        "pages": pages,
        "upload_msgs_per_s": round(count / upload_s),
        "restore_s": round(restore_s, 2),
        "restored": restored,
        "older_page_ms_p50": round(samples[len(samples) // 2], 2),
        "older_page_ms_max": round(samples[-1], 2),
        "note": "client side only: the vault REST calls are answered in memory",
    }


def measure(quick: bool, work_dir: Path) -> Json:
    return asyncio.run(_measure(quick, work_dir))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.quick, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
