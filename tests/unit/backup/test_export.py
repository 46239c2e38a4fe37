"""The export file: round trip, streaming, and every kind of tampering."""

from __future__ import annotations

import io

import pytest

from tidings.client.backup.export import ExportReader, ExportWriter, read_export
from tidings.crypto.vault import (
    TamperedExport,
    TamperedPage,
    VaultError,
    WrongPassphrase,
    seal_page,
)

from .helpers import ACCOUNT, FAST, PASS, fast_enrol

PAGES = [("h/c/0", b"first page", 1), ("h/c/1", b"second page", 3), ("account/secrets", b"s", 2)]


def build(pages: list[tuple[str, bytes, int]] = PAGES) -> tuple[bytes, bytes, bytes]:
    """(file, vault key, wrapped key)"""
    enrolment = fast_enrol()
    out = io.BytesIO()
    with ExportWriter(
        out, vault_key=enrolment.vault_key, account_id=ACCOUNT, wrapped=enrolment.wrapped
    ) as writer:
        for page_id, plaintext, generation in pages:
            writer.add(
                page_id,
                seal_page(enrolment.vault_key, ACCOUNT, page_id, plaintext, generation=generation),
            )
    return out.getvalue(), enrolment.vault_key, enrolment.wrapped


def stream(data: bytes, key: bytes) -> list[tuple[str, bytes, int]]:
    reader = ExportReader(io.BytesIO(data))
    pages = [(pid, page.plaintext, page.generation) for pid, page in reader.pages(key)]
    assert reader.verified
    return pages


@pytest.fixture(scope="module")
def export() -> tuple[bytes, bytes, bytes]:
    return build()


def test_an_export_round_trips_with_the_passphrase_alone(
    export: tuple[bytes, bytes, bytes],
) -> None:
    data, key, wrapped = export
    contents = read_export(io.BytesIO(data), PASS, limits=FAST)
    assert contents.vault_key == key
    assert contents.wrapped == wrapped
    assert contents.account_id == ACCOUNT
    assert {pid: (p.plaintext, p.generation) for pid, p in contents.pages.items()} == {
        pid: (plain, gen) for pid, plain, gen in PAGES
    }
    assert key.hex() not in repr(contents)


def test_the_streaming_reader_yields_pages_in_order(export: tuple[bytes, bytes, bytes]) -> None:
    data, key, _ = export
    reader = ExportReader(io.BytesIO(data))
    assert reader.account_id == ACCOUNT
    assert reader.params.m_cost_kib == 8 * 1024
    assert stream(data, key) == PAGES


def test_an_empty_export_is_valid() -> None:
    data, key, _ = build([])
    assert stream(data, key) == []


def test_a_wrong_passphrase_is_wrong_passphrase(export: tuple[bytes, bytes, bytes]) -> None:
    with pytest.raises(WrongPassphrase):
        read_export(io.BytesIO(export[0]), PASS + "?", limits=FAST)


def test_every_bit_flip_is_detected(export: tuple[bytes, bytes, bytes]) -> None:
    data, key, _ = export
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            with pytest.raises(TamperedExport):
                stream(bytes(flipped), key)


def test_header_flips_fail_a_passphrase_import(export: tuple[bytes, bytes, bytes]) -> None:
    data, _, wrapped = export
    header_end = data.index(wrapped) + len(wrapped)
    for i in range(header_end):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        with pytest.raises(VaultError):
            read_export(io.BytesIO(bytes(flipped)), PASS, limits=FAST)


def test_every_truncation_and_any_extension_is_detected(
    export: tuple[bytes, bytes, bytes],
) -> None:
    data, key, _ = export
    for cut in range(len(data)):
        with pytest.raises(TamperedExport):
            stream(data[:cut], key)
    with pytest.raises(TamperedExport):
        stream(data + b"\x00", key)


def records(data: bytes, wrapped: bytes) -> tuple[bytes, list[bytes], bytes]:
    """Split a file into header, page records and trailer."""
    start = data.index(wrapped) + len(wrapped)
    header, rest, out = data[:start], data[start:], []
    while rest[0] == 0x01:
        id_len = rest[1]
        length = int.from_bytes(rest[2 + id_len : 6 + id_len], "big")
        end = 6 + id_len + length
        out.append(rest[:end])
        rest = rest[end:]
    return header, out, rest


def test_reordered_dropped_or_duplicated_pages_are_detected(
    export: tuple[bytes, bytes, bytes],
) -> None:
    data, key, wrapped = export
    header, pages, trailer = records(data, wrapped)
    assert header + b"".join(pages) + trailer == data
    variants = [
        [pages[1], pages[0], pages[2]],
        [pages[0], pages[2]],
        [pages[0], pages[1], pages[2], pages[2]],
        [pages[0], pages[1]],
    ]
    for variant in variants:
        with pytest.raises(TamperedExport):
            stream(header + b"".join(variant) + trailer, key)


def test_pages_or_trailers_spliced_from_another_export_are_detected(
    export: tuple[bytes, bytes, bytes],
) -> None:
    data, key, wrapped = export
    header, pages, trailer = records(data, wrapped)
    # A second export of the same vault, with a newer page 0.
    out = io.BytesIO()
    with ExportWriter(out, vault_key=key, account_id=ACCOUNT, wrapped=wrapped) as writer:
        writer.add("h/c/0", seal_page(key, ACCOUNT, "h/c/0", b"newer", generation=9))
    other_header, other_pages, other_trailer = records(out.getvalue(), wrapped)
    with pytest.raises(TamperedExport):
        stream(header + b"".join([other_pages[0], *pages[1:]]) + trailer, key)
    with pytest.raises(TamperedExport):
        stream(other_header + pages[0] + other_trailer, key)
    with pytest.raises(TamperedExport):
        stream(header + other_pages[0] + other_trailer, key)


def test_the_writer_refuses_pages_that_do_not_open() -> None:
    enrolment = fast_enrol()
    key = enrolment.vault_key
    writer = ExportWriter(
        io.BytesIO(), vault_key=key, account_id=ACCOUNT, wrapped=enrolment.wrapped
    )
    with pytest.raises(TamperedPage):
        writer.add("h/c/1", seal_page(key, ACCOUNT, "h/c/0", b"x", generation=0))
    writer.add("h/c/0", seal_page(key, ACCOUNT, "h/c/0", b"x", generation=0))
    with pytest.raises(TamperedExport):
        writer.add("h/c/0", seal_page(key, ACCOUNT, "h/c/0", b"x", generation=1))
    writer.finish()
    with pytest.raises(ValueError):
        writer.add("h/c/2", seal_page(key, ACCOUNT, "h/c/2", b"x", generation=0))


def test_not_an_export() -> None:
    for data in (b"", b"TDVAULTX", b"PK\x03\x04" + bytes(100), b"TDVAULTX\x02" + bytes(100)):
        with pytest.raises(TamperedExport):
            ExportReader(io.BytesIO(data))
