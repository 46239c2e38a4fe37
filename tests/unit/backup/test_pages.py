"""History pages: deterministic encoding, bounds, packing, sealing."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.client.backup.pages import (
    MAX_PAGE_BYTES,
    MAX_PAGE_MESSAGES,
    HistoryPage,
    MessageRecord,
    PageError,
    Reaction,
    decode_page,
    encode_page,
    history_page_id,
    open_history_page,
    pack_pages,
    seal_history_page,
)
from tidings.crypto.vault import StalePage, TamperedPage, new_vault_key, seal_page

from .helpers import ACCOUNT, message

ids = st.text(min_size=1, max_size=40)
u63 = st.integers(min_value=0, max_value=(1 << 63) - 1)
short = st.text(max_size=20)
reactions = st.builds(Reaction, sender=ids, emoji=short, ts=u63)


@st.composite
def records(draw: st.DrawFn, conv: str = "c1") -> MessageRecord:
    return MessageRecord(
        id=draw(ids),
        conv_id=conv,
        seq=draw(st.none() | u63),
        sender=draw(ids),
        sender_device=draw(u63),
        ts=draw(u63),
        kind=draw(short),
        body=draw(st.text(max_size=300)),
        status=draw(short),
        reactions=draw(st.lists(reactions, max_size=4)),
        attachment=draw(st.none() | st.binary(max_size=200)),
        edited=draw(st.booleans()),
        deleted=draw(st.booleans()),
        reply_to=draw(st.none() | ids),
        meta=draw(st.none() | st.binary(max_size=50)),
    )


def unique(messages: list[MessageRecord]) -> list[MessageRecord]:
    return list({m.id: m for m in messages}.values())


@settings(max_examples=80, deadline=None)
@given(st.lists(records(), max_size=20).map(unique), st.integers(min_value=0, max_value=10**6))
def test_pages_round_trip_and_encode_deterministically(
    messages: list[MessageRecord], index: int
) -> None:
    page = HistoryPage("c1", index, messages)
    data = encode_page(page)
    assert decode_page(data) == page
    assert encode_page(decode_page(data)) == data
    rebuilt = HistoryPage("c1", index, [msgspec.structs.replace(m) for m in messages])
    assert encode_page(rebuilt) == data


@settings(max_examples=30, deadline=None)
@given(st.lists(records(), max_size=10).map(unique), st.integers(min_value=0, max_value=2**40))
def test_sealed_pages_round_trip(messages: list[MessageRecord], generation: int) -> None:
    key = new_vault_key()
    page = HistoryPage("c1", 4, messages)
    sealed = seal_history_page(key, ACCOUNT, page, generation=generation)
    assert open_history_page(key, ACCOUNT, "c1", 4, sealed) == (page, generation)


def test_a_page_has_at_most_500_messages() -> None:
    full = HistoryPage("c", 0, [message("c", n) for n in range(MAX_PAGE_MESSAGES)])
    encode_page(full)
    with pytest.raises(PageError):
        encode_page(HistoryPage("c", 0, [message("c", n) for n in range(MAX_PAGE_MESSAGES + 1)]))
    over = msgspec.msgpack.encode(
        HistoryPage("c", 0, [message("c", n) for n in range(MAX_PAGE_MESSAGES + 1)])
    )
    with pytest.raises(PageError):
        decode_page(over)


def test_a_page_has_at_most_256_kib() -> None:
    half = "x" * (MAX_PAGE_BYTES // 2)
    big = HistoryPage("c", 0, [message("c", 0, half), message("c", 1, half)])
    with pytest.raises(PageError):
        encode_page(big)
    with pytest.raises(PageError):
        decode_page(msgspec.msgpack.encode(big))
    # one message alone may take an oversized page, up to the vault's 1 MiB
    alone = HistoryPage("c", 0, [message("c", 0, "x" * MAX_PAGE_BYTES)])
    assert decode_page(encode_page(alone)) == alone
    huge = HistoryPage("c", 0, [message("c", 0, "x" * (1 << 20))])
    with pytest.raises(PageError):
        encode_page(huge)
    with pytest.raises(PageError):
        decode_page(msgspec.msgpack.encode(huge))


@pytest.mark.parametrize(
    "page",
    [
        HistoryPage("c", 0, [message("other", 0)]),
        HistoryPage("c", 0, [message("c", 0), message("c", 0)]),
        HistoryPage("c", 0, [], version=2),
        HistoryPage("c", 0, [message("c", 0, seq=-1)]),
        HistoryPage("", 0, []),
    ],
)
def test_inconsistent_pages_are_refused(page: HistoryPage) -> None:
    with pytest.raises(PageError):
        encode_page(page)
    with pytest.raises(PageError):
        decode_page(msgspec.msgpack.encode(page))


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x93\xa1c\x00", b"\x90", b"\x00" * 10])
def test_malformed_plaintext_is_a_page_error(data: bytes) -> None:
    with pytest.raises(PageError):
        decode_page(data)


def test_packing_respects_both_bounds_and_keeps_order() -> None:
    many = [message("c", n) for n in range(1234)]
    pages = pack_pages("c", many, start_index=5)
    assert [p.index for p in pages] == [5, 6, 7]
    assert [len(p.messages) for p in pages] == [500, 500, 234]
    assert [m for p in pages for m in p.messages] == many
    bulky = [message("c", n, "y" * 60_000) for n in range(10)]
    pages = pack_pages("c", bulky)
    assert len(pages) == 3
    for page in pages:
        assert len(encode_page(page)) <= MAX_PAGE_BYTES
    assert [m for p in pages for m in p.messages] == bulky
    assert pack_pages("c", []) == []


def test_packing_refuses_a_message_too_big_for_any_page_or_of_another_conversation() -> None:
    with pytest.raises(PageError):
        pack_pages("c", [message("c", 0, "z" * (1 << 20))])
    with pytest.raises(PageError):
        pack_pages("c", [message("d", 0)])


def test_page_ids() -> None:
    assert history_page_id("c1", 3) == "h/c1/3"
    for conv, index in (("", 0), ("a/b", 0), ("x" * 201, 0), ("c", -1)):
        with pytest.raises(PageError):
            history_page_id(conv, index)


def test_pages_are_checked_against_their_place() -> None:
    key = new_vault_key()
    page0 = seal_history_page(key, ACCOUNT, HistoryPage("c", 0, [message("c", 0)]), generation=2)
    with pytest.raises(TamperedPage):
        open_history_page(key, ACCOUNT, "c", 1, page0)  # swapped to another index
    with pytest.raises(TamperedPage):
        open_history_page(key, ACCOUNT, "d", 0, page0)  # to another conversation
    with pytest.raises(TamperedPage):
        open_history_page(key, "other", "c", 0, page0)  # to another account
    with pytest.raises(StalePage):
        open_history_page(key, ACCOUNT, "c", 0, page0, min_generation=3)
    flipped = page0[:-1] + bytes((page0[-1] ^ 1,))
    with pytest.raises(TamperedPage):
        open_history_page(key, ACCOUNT, "c", 0, flipped)
    # Authentic bytes whose content names another place (only the key holder could make them).
    lying = seal_page(key, ACCOUNT, "h/c/1", encode_page(HistoryPage("c", 0, [])), generation=0)
    with pytest.raises(PageError):
        open_history_page(key, ACCOUNT, "c", 1, lying)
