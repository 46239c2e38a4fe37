"""What the pages must still hold at the edges: the largest message the protocol allows, with
its reactions, gets a page of its own; a message too large even for that stays out alone."""

from __future__ import annotations

from tidings.client.backup.pages import (
    MAX_PAGE_BYTES,
    MAX_SINGLE_BYTES,
    Reaction,
    decode_page,
    encode_page,
    fits,
    pack_pages,
)
from tidings.protocol.content import MAX_TEXT_CHARS

from .helpers import message


def test_the_largest_text_with_many_reactions_gets_an_oversized_page_of_its_own() -> None:
    # 64,000 characters of 4-byte UTF-8 are 256,000 bytes: with 1,000 members' reactions
    # and an attachment pointer the message alone is larger than a normal page
    reactions = [Reaction(f"a{n:032x}", "😀", 1_700_000_000_000 + n) for n in range(1000)]
    big = message("c", 5, "😀" * MAX_TEXT_CHARS, reactions=reactions, attachment=b"p" * 4000)
    assert fits(big)
    before = [message("c", n) for n in range(1, 5)]
    after = [message("c", n) for n in range(6, 9)]
    pages = pack_pages("c", [*before, big, *after], start_index=300)
    assert [len(p.messages) for p in pages] == [4, 1, 3]
    assert [p.index for p in pages] == [300, 301, 302]
    data = encode_page(pages[1])
    assert MAX_PAGE_BYTES < len(data) <= MAX_SINGLE_BYTES
    assert decode_page(data).messages[0] == big
    seqs = [m.seq for p in pages for m in p.messages]
    assert seqs == list(range(1, 9))


def test_a_message_larger_than_any_page_is_refused_alone() -> None:
    assert not fits(message("c", 1, "x" * MAX_SINGLE_BYTES))
    assert fits(message("c", 1, "x" * (MAX_PAGE_BYTES + 10)))
