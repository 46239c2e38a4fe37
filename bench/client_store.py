"""The client's local store (``tidings.client.store``) with one big conversation.

Grows one conversation to 10k, 100k and 1M messages (``--quick``: 10k, 100k) through the same
path the runtime uses for a replayed Batch (``LocalStore.apply`` of ``StoreOpened`` with 500
envelopes per transaction) and, at each size, times:

- insert rate (messages/s over the growth to that size, FTS5 triggers included);
- a page of 50 (``Store.history``) at random reverse cursors through the whole conversation;
- FTS5 search (``Store.search``, limit 50) for rare, middling and common words and prefixes.

Bodies are 5-15 words drawn from a synthetic 5,000-word vocabulary with Zipf-like frequencies
(fixed seed), so common words match a large share of the conversation, as in a real chat.

    python -m bench.client_store [--quick] [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tidings.client.core.opening import OpenedEnvelope, StoreOpened
from tidings.client.core.payload import open_payload
from tidings.client.ids import new_message_id
from tidings.client.store import LocalStore
from tidings.client.types import Account
from tidings.protocol import frames as fr
from tidings.protocol.content import Text, encode_content

FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
BATCH = fr.MAX_BATCH
PAGE = 50
PAGE_SAMPLES = 200
VOCABULARY = 5_000
#: word ranks searched for: common, middling, rare (rank 1 is the most frequent word)
QUERY_RANKS = (3, 10, 60, 300, 1_500, 4_000)
QUERY_REPEATS = 5
QUICK_QUERY_REPEATS = 2

Json = dict[str, Any]


def _vocabulary(rng: random.Random) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "do", "fi"]
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words, key=lambda w: (rng.random(), w))


class _Bodies:
    """Deterministic message bodies with Zipf-like word frequencies."""

    def __init__(self, seed: int = 6) -> None:
        self.rng = random.Random(seed)
        self.words = _vocabulary(self.rng)
        self.cum_weights = list(itertools.accumulate(1 / r for r in range(1, VOCABULARY + 1)))

    def __iter__(self) -> Iterator[str]:
        while True:
            k = self.rng.randint(5, 15)
            yield " ".join(self.rng.choices(self.words, cum_weights=self.cum_weights, k=k))


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return round(p50 * 1000, 3), round(p99 * 1000, 3)


def measure(quick: bool, work_dir: Path, sizes: tuple[int, ...] | None = None) -> Json:
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    db_dir = Path(tempfile.mkdtemp(prefix="client-store-", dir=work_dir))
    store = LocalStore(db_dir / "profile.sqlite3")
    store.set_account(Account("me", "me", 1, "http://127.0.0.1"))
    conv = "bench-conv"
    bodies = iter(_Bodies())
    words = _Bodies().words
    rng = random.Random(7)
    result: Json = {"sizes": []}
    seq = 0
    ts = 1_700_000_000_000
    try:
        for size in sizes:
            t0 = time.perf_counter()
            grown = size - seq
            while seq < size:
                envelopes = []
                for _ in range(min(BATCH, size - seq)):
                    seq += 1
                    ts += 1
                    payload = encode_content(Text(body=next(bodies)))
                    envelopes.append(
                        fr.Envelope(
                            conv=conv,
                            seq=seq,
                            id=new_message_id(),
                            sender="peer",
                            sender_device=1,
                            ts=ts,
                            payload=payload,
                        )
                    )
                opened = tuple(OpenedEnvelope(e, open_payload(e.payload)) for e in envelopes)
                store.apply([StoreOpened(conv, opened)])
            insert_s = time.perf_counter() - t0

            pages: list[float] = []
            for i in range(PAGE_SAMPLES):
                before = None if i == 0 else rng.randint(PAGE + 1, seq)
                t = time.perf_counter()
                page = store.history(conv, before, PAGE)
                pages.append(time.perf_counter() - t)
                if len(page.messages) != PAGE:
                    raise RuntimeError(f"page of {len(page.messages)} instead of {PAGE}")

            searches: list[float] = []
            by_rank: dict[str, float] = {}
            for rank in QUERY_RANKS:
                word = words[rank - 1]
                for query in (word, word[:3], f"{words[0]} {word}"):
                    for _ in range(QUICK_QUERY_REPEATS if quick else QUERY_REPEATS):
                        t = time.perf_counter()
                        store.search(query, 50)
                        searches.append(time.perf_counter() - t)
                    by_rank[f"{query!r} (rank {rank})"] = round(searches[-1] * 1000, 2)
            page_p50, page_p99 = _percentiles(pages)
            fts_p50, fts_p99 = _percentiles(searches)
            slowest = sorted(by_rank.items(), key=lambda kv: -kv[1])[:3]
            result["sizes"].append(
                {
                    "messages": seq,
                    "insert_per_s": round(grown / insert_s, 1),
                    "page_ms_p50": page_p50,
                    "page_ms_p99": page_p99,
                    "fts_ms_p50": fts_p50,
                    "fts_ms_p99": fts_p99,
                    "slowest_queries_ms": slowest,
                    "db_mib": round(sum(p.stat().st_size for p in db_dir.iterdir()) / 2**20, 1),
                }
            )
    finally:
        store.close()
        shutil.rmtree(db_dir, ignore_errors=True)
    result["note"] = (
        f"One conversation, {BATCH} envelopes per transaction (a replayed Batch). Pages: "
        f"{PAGE_SAMPLES} random reverse cursors. FTS5: {len(searches)} "
        "searches per size (whole word, 3-letter prefix, two words; common to rare words); "
        "slowest: " + "; ".join(f"{q} {t} ms" for q, t in result["sizes"][-1]["slowest_queries_ms"])
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client_store", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default="", help="comma-separated message counts")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(",") if s) or None
    work_dir = Path(tempfile.gettempdir())
    print(json.dumps(measure(args.quick, work_dir, sizes), indent=2))


if __name__ == "__main__":
    main()
