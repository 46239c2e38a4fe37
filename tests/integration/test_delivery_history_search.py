"""Issue 2, done-when (e): search finds messages by word, and paging with
``history(before=...)`` returns the whole history in order, without overlap or gaps."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client
from tidings.client.types import Message, MessageStatus

COUNT = 237  # not a multiple of any page size used below
FRUITS = ["apple", "banana", "cherry", "damson", "elderberry", "fig", "grape"]


def body(i: int) -> str:
    text = f"note {i:03d} about the {FRUITS[i % len(FRUITS)]} harvest"
    if i % 50 == 7:
        text += " with a marmalade recipe"
    return text


async def wait_for_texts(client: Client, conv_id: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        page = await client.history(conv_id, limit=count + 10)
        texts = [m for m in page.messages if m.kind == "text" and m.seq is not None]
        if len(texts) >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(texts)} of {count} messages arrived")
        await asyncio.sleep(0.1)


async def pages(client: Client, conv_id: str, limit: int) -> list[tuple[Message, ...]]:
    result: list[tuple[Message, ...]] = []
    before: int | None = None
    for _ in range(10_000):
        page = await client.history(conv_id, before=before, limit=limit)
        assert len(page.messages) <= limit
        result.append(page.messages)
        if page.before is None:
            return result
        assert page.messages, "an empty page still promised older messages"
        before = page.before
    raise AssertionError("paging never reached the start")


@pytest.mark.timeout(180)
async def test_search_and_paging_cover_the_whole_history(server: Any, tmp_path: Path) -> None:
    alice = await Client.create_account(tmp_path / "alice", server.url, "alice")
    bob = await Client.create_account(tmp_path / "bob", server.url, "bob")
    try:
        await alice.start()
        await bob.start()
        await alice.wait_synced(timeout=20)
        await bob.wait_synced(timeout=20)
        conv = await alice.open_direct("bob")
        ids: list[uuid.UUID] = []
        for i in range(COUNT):
            ids.append((await alice.send_text(conv.id, body(i))).id)
        await wait_for_texts(bob, conv.id, COUNT, 60)
        await wait_for_texts(alice, conv.id, COUNT, 60)

        for client in (alice, bob):
            everything = (await client.history(conv.id, limit=COUNT + 10)).messages
            texts = [m for m in everything if m.kind == "text"]
            assert [m.id for m in texts] == ids
            seqs = [m.seq for m in everything]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

            for limit in (1, 10, 25, 50, 100):
                got = await pages(client, conv.id, limit)
                flat = [m for page in reversed(got) for m in page]
                assert [m.id for m in flat] == [m.id for m in everything], f"limit {limit}"
                for page in got:
                    page_seqs = [m.seq for m in page]
                    assert page_seqs == sorted(page_seqs)
                # consecutive pages meet exactly: no overlap, no gap
                for newer, older in itertools.pairwise(got):
                    assert older[-1].seq + 1 == newer[0].seq

            # a word that is in a few messages, in the middle of the body
            hits = await client.search("marmalade")
            expected = {ids[i] for i in range(COUNT) if i % 50 == 7}
            assert {h.message.id for h in hits} == expected
            assert all("[marmalade]" in h.snippet for h in hits)
            # a word that is in every seventh message
            hits = await client.search("cherry", limit=COUNT)
            assert {h.message.id for h in hits} == {ids[i] for i in range(COUNT) if i % 7 == 2}
            # a word in no message
            assert await client.search("durian") == []
            # a word in every message, limited
            assert len(await client.search("harvest", limit=20)) == 20

        # status sanity: alice's messages were all accepted, bob's copies are not hers
        own = await alice.message(ids[-1])
        assert own is not None and own.is_own
        assert own.status in (MessageStatus.SENT, MessageStatus.DELIVERED)
        theirs = await bob.message(ids[-1])
        assert theirs is not None and not theirs.is_own and theirs.sender_name == "alice"
    finally:
        await alice.close()
        await bob.close()
