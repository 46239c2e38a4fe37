"""The export file: a whole vault in one stream, readable with the passphrase alone.

Guarantees, first: every page in the file is sealed (:func:`tidings.crypto.vault.seal_page`)
and is authenticated by :func:`~tidings.crypto.vault.open_page` before the reader yields it; the
file *as a whole* — its header, the set of pages, their order, and its end — is authenticated
by the trailing index's HMAC under a key derived from the vault key, which the reader checks
when it reaches the end. So a truncated, reordered, spliced, extended or bit-flipped file
raises :class:`TamperedExport` (a wrong passphrase raises ``WrongPassphrase``); but a
streaming reader has yielded the pages before the end, so a caller must treat an import as
committed only once :meth:`ExportReader.pages` has finished (e.g. one store transaction), or
use :func:`read_export`, which returns nothing until the whole file verified. Page ids,
generations and sizes are in the clear in the file; contents are not.

Layout (integers big-endian)::

    header   "TDVAULTX" | format u8 | export id (16 random bytes)
             | account id (u8 length + UTF-8) | wrapped vault key (u16 length + bytes)
    page     0x01 | page id (u8 length + UTF-8) | sealed page (u32 length + bytes)   (0..n times)
    trailer  0x02 | index (u32 length + bytes) | HMAC-SHA256 (32 bytes) | end of file

    index    count u32 | per page, in file order: page id (u8 length + UTF-8)
             | generation u64 | SHA-256 of the page's whole record
    HMAC     key = HKDF(vault key, "tidings vault export index v1" + export id)
             over SHA-256(header) | index
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from tidings.crypto.errors import TamperedExport, TamperedPage, VaultFormatError
from tidings.crypto.symmetric import constant_time_equal, hkdf_sha256, hmac_sha256
from tidings.crypto.vault import (
    MAX_PAGE_PLAINTEXT,
    PRODUCTION_LIMITS,
    KdfLimits,
    KdfParams,
    OpenedPage,
    open_page,
    recover_vault_key,
    sealed_page_generation,
    wrapped_key_params,
)

__all__ = [
    "EXPORT_FORMAT",
    "MAX_EXPORT_PAGES",
    "ExportContents",
    "ExportReader",
    "ExportWriter",
    "read_export",
]

EXPORT_FORMAT = 1
MAX_EXPORT_PAGES = 1 << 20
_MAGIC = b"TDVAULTX"
_PAGE = 0x01
_TRAILER = 0x02
_MAX_WRAPPED = 4096
_MAX_SEALED = MAX_PAGE_PLAINTEXT + 64
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def _lp8(data: bytes) -> bytes:
    if not data or len(data) > 255:
        raise ValueError("an id must be 1..255 bytes")
    return bytes((len(data),)) + data


def _index_key(vault_key: bytes, export_id: bytes) -> bytes:
    return hkdf_sha256(vault_key, b"tidings vault export index v1" + export_id, 32)


@dataclass(slots=True)
class _Index:
    count: int = 0
    entries: list[bytes] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    def add(self, page_id: str, generation: int, digest: bytes) -> None:
        if page_id in self.ids:
            raise TamperedExport(f"page {page_id!r} appears twice")
        if self.count >= MAX_EXPORT_PAGES:
            raise TamperedExport("too many pages")
        self.ids.add(page_id)
        self.count += 1
        self.entries.append(_lp8(page_id.encode()) + _U64.pack(generation) + digest)

    def encode(self) -> bytes:
        return _U32.pack(self.count) + b"".join(self.entries)


class ExportWriter:
    """Write an export file to ``stream``: the header now, pages with :meth:`add`, then
    :meth:`finish` (or leave a ``with`` block without an exception)."""

    def __init__(
        self, stream: BinaryIO, *, vault_key: bytes, account_id: str, wrapped: bytes
    ) -> None:
        wrapped_key_params(wrapped)  # refuse to write a file that could never be opened
        if len(wrapped) > _MAX_WRAPPED:
            raise ValueError("the wrapped key is too long")
        self._stream = stream
        self._vault_key = vault_key
        self._account_id = account_id
        export_id = secrets.token_bytes(16)
        header = (
            _MAGIC
            + bytes((EXPORT_FORMAT,))
            + export_id
            + _lp8(account_id.encode())
            + struct.pack(">H", len(wrapped))
            + wrapped
        )
        self._key = _index_key(vault_key, export_id)
        self._header_hash = hashlib.sha256(header).digest()
        self._index = _Index()
        self._finished = False
        stream.write(header)

    def add(self, page_id: str, sealed: bytes) -> None:
        """Append one sealed page; it must open under this vault key and account."""
        if self._finished:
            raise ValueError("the export is finished")
        opened = open_page(self._vault_key, self._account_id, page_id, sealed)
        record = bytes((_PAGE,)) + _lp8(page_id.encode()) + _U32.pack(len(sealed)) + sealed
        self._index.add(page_id, opened.generation, hashlib.sha256(record).digest())
        self._stream.write(record)

    def finish(self) -> None:
        """Write the authenticated index; the file is complete."""
        if self._finished:
            return
        index = self._index.encode()
        mac = hmac_sha256(self._key, self._header_hash + index)
        self._stream.write(bytes((_TRAILER,)) + _U32.pack(len(index)) + index + mac)
        self._finished = True

    def __enter__(self) -> ExportWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.finish()


class ExportReader:
    """Read an export file from ``stream``: the header at once, then :meth:`pages`."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hasher = hashlib.sha256()
        magic = self._read(len(_MAGIC))
        if magic != _MAGIC:
            raise TamperedExport("not a Tidings export file")
        if self._read(1)[0] != EXPORT_FORMAT:
            raise TamperedExport("unknown export format")
        self.export_id = self._read(16)
        self.account_id = self._read_id()
        (length,) = struct.unpack(">H", self._read(2))
        if length > _MAX_WRAPPED:
            raise TamperedExport("the wrapped key is too long")
        self.wrapped = self._read(length)
        #: unauthenticated until the wrapped key unwraps (its AEAD covers the params)
        try:
            self.params: KdfParams = wrapped_key_params(self.wrapped)
        except VaultFormatError as exc:
            raise TamperedExport(f"the wrapped key is malformed: {exc}") from None
        self._header_hash = self._hasher.digest()
        self.verified = False

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:  # a raw stream or a pipe may return less than asked
            chunk = self._stream.read(n - len(data))
            if not chunk:
                raise TamperedExport("the export file is truncated")
            data += chunk
        self._hasher.update(data)
        return data

    def _read_id(self) -> str:
        length = self._read(1)[0]
        if not length:
            raise TamperedExport("an empty id")
        try:
            return self._read(length).decode()
        except UnicodeDecodeError:
            raise TamperedExport("an id is not UTF-8") from None

    def pages(self, vault_key: bytes) -> Iterator[tuple[str, OpenedPage]]:
        """Each page, authenticated, in file order; :class:`TamperedExport` at the end (or
        earlier) unless the whole file is as written. Sets :attr:`verified` when done."""
        index = _Index()
        while True:
            self._hasher = hashlib.sha256()  # each record's hash covers its tag to its end
            tag = self._read(1)[0]
            if tag == _TRAILER:
                break
            if tag != _PAGE:
                raise TamperedExport(f"unknown record type {tag}")
            page_id = self._read_id()
            (length,) = _U32.unpack(self._read(4))
            if length > _MAX_SEALED:
                raise TamperedExport("a page is larger than any page")
            sealed = self._read(length)
            try:
                generation = sealed_page_generation(sealed)
                index.add(page_id, generation, self._hasher.digest())
                opened = open_page(vault_key, self.account_id, page_id, sealed)
            except TamperedPage as exc:
                raise TamperedExport(f"page {page_id!r}: {exc}") from None
            yield page_id, opened
        self._check_trailer(vault_key, index)

    def _check_trailer(self, vault_key: bytes, index: _Index) -> None:
        (length,) = _U32.unpack(self._read(4))
        expected = index.encode()
        if length != len(expected):
            raise TamperedExport("the index does not match the pages")
        written = self._read(length)
        mac = self._read(32)
        key = _index_key(vault_key, self.export_id)
        if not constant_time_equal(mac, hmac_sha256(key, self._header_hash + written)):
            raise TamperedExport("the index does not authenticate")
        if not constant_time_equal(written, expected):
            raise TamperedExport("the pages are not those the index lists, in its order")
        if self._stream.read(1):
            raise TamperedExport("data after the end of the export")
        self.verified = True


@dataclass(frozen=True, slots=True)
class ExportContents:
    """A fully verified export: the vault key it unlocked and its pages by id."""

    account_id: str
    vault_key: bytes
    wrapped: bytes
    pages: dict[str, OpenedPage]

    def __repr__(self) -> str:
        return f"ExportContents(account_id={self.account_id!r}, pages={len(self.pages)}, ...)"


def read_export(
    stream: BinaryIO, passphrase: str, *, limits: KdfLimits = PRODUCTION_LIMITS
) -> ExportContents:
    """Unlock and verify a whole export; returns only if everything in it is authentic.

    ``WrongPassphrase`` if the passphrase (or the header) is wrong, ``VaultFormatError`` if the
    params are out of ``limits``, :class:`TamperedExport` for anything else.
    """
    reader = ExportReader(stream)
    vault_key = recover_vault_key(passphrase, reader.account_id, reader.wrapped, limits=limits)
    pages = dict(reader.pages(vault_key))
    if not reader.verified:  # pragma: no cover - pages() raises before it can end unverified
        raise TamperedExport("the export did not verify")
    return ExportContents(reader.account_id, vault_key, reader.wrapped, pages)
