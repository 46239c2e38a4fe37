"""History pages: one conversation's messages in a bounded, deterministic msgpack page.

Guarantees, first: a page is sealed with :func:`tidings.crypto.vault.seal_page` under the id
``h/<conv_id>/<index>``, so the server sees only that id, the page's generation and its size;
:func:`open_history_page` authenticates the whole page (id, account, generation) *before*
decoding it, then decodes it under the size bounds and checks that the page is the one asked
for (conversation and index) and internally consistent. A page holds at most
:data:`MAX_PAGE_MESSAGES` messages and :data:`MAX_PAGE_BYTES` of encoded plaintext; the same
page always encodes to the same bytes (msgspec structs as arrays, fields in a fixed order, no
maps, no floats), so re-sealing an unchanged page can be skipped by comparing encodings.

A single message larger than that (64,000 characters of 4-byte UTF-8 text alone are 256,000
bytes, before its reactions, attachment pointers and metadata) gets an *oversized* page of its
own: a page of exactly one message may encode to :data:`MAX_SINGLE_BYTES` (the vault's 1 MiB
plaintext limit). :func:`fits` says whether a message fits even that; one that does not is
left out of the vault by the uploader (logged), never the rest of its span.

The model is generic on purpose: statuses, kinds and reactions are strings and lists, the
attachment pointer and any system-event metadata are opaque bytes owned by the client store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import msgspec

from tidings.crypto.vault import MAX_PAGE_PLAINTEXT, open_page, seal_page

__all__ = [
    "MAX_PAGE_BYTES",
    "MAX_PAGE_MESSAGES",
    "MAX_SINGLE_BYTES",
    "PAGE_FORMAT",
    "HistoryPage",
    "MessageRecord",
    "PageError",
    "Reaction",
    "decode_page",
    "encode_page",
    "fits",
    "history_page_id",
    "open_history_page",
    "pack_pages",
    "seal_history_page",
]

PAGE_FORMAT = 1
MAX_PAGE_BYTES = 256 * 1024
MAX_PAGE_MESSAGES = 500
#: the bound of an oversized page (one message alone)
MAX_SINGLE_BYTES = MAX_PAGE_PLAINTEXT
MAX_CONV_ID = 200

_U63 = msgspec.Meta(ge=0, le=(1 << 63) - 1)
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CONV_ID)]
_Short = Annotated[str, msgspec.Meta(max_length=64)]
_Count = Annotated[int, _U63]
# Encoded size of the page's fixed fields and the messages array's header, above the messages.
_PAGE_OVERHEAD = 1 + 9 + (2 + MAX_CONV_ID * 4) + 9 + 5


class PageError(ValueError):
    """A page that breaks the bounds or is inconsistent (after it authenticated, or on encode)."""


class Reaction(msgspec.Struct, frozen=True, array_like=True):
    """One account's reaction to a message."""

    sender: _Id
    emoji: _Short
    ts: _Count


class MessageRecord(msgspec.Struct, frozen=True, array_like=True):
    """One message as the history keeps it."""

    id: _Id
    conv_id: _Id
    #: the server's sequence number; None if it never accepted the message
    seq: Annotated[int, _U63] | None
    sender: _Id
    sender_device: _Count
    #: milliseconds since the epoch
    ts: _Count
    kind: _Short
    body: str
    status: _Short
    reactions: list[Reaction] = []
    #: an opaque attachment pointer (the client store's encoding: id, key, digest, url, ...)
    attachment: bytes | None = None
    edited: bool = False
    deleted: bool = False
    reply_to: _Id | None = None
    #: opaque metadata of a system message
    meta: bytes | None = None


class HistoryPage(msgspec.Struct, frozen=True, array_like=True):
    """Up to :data:`MAX_PAGE_MESSAGES` consecutive messages of one conversation."""

    conv_id: _Id
    #: the page's number within the conversation (0, 1, ...)
    index: _Count
    messages: Annotated[list[MessageRecord], msgspec.Meta(max_length=MAX_PAGE_MESSAGES)]
    version: int = PAGE_FORMAT


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(HistoryPage)


def history_page_id(conv_id: str, index: int) -> str:
    """The vault page id of a conversation's page ``index``."""
    if not conv_id or len(conv_id) > MAX_CONV_ID or "/" in conv_id:
        raise PageError("a conversation id is 1..200 characters without '/'")
    if index < 0:
        raise PageError("a page index is not negative")
    return f"h/{conv_id}/{index}"


def _check(page: HistoryPage) -> None:
    if page.version != PAGE_FORMAT:
        raise PageError(f"unknown page format {page.version}")
    if len(page.messages) > MAX_PAGE_MESSAGES:
        raise PageError(f"a page holds at most {MAX_PAGE_MESSAGES} messages")
    seen: set[str] = set()
    for message in page.messages:
        if message.conv_id != page.conv_id:
            raise PageError(f"message {message.id!r} belongs to another conversation")
        if message.id in seen:
            raise PageError(f"message {message.id!r} appears twice")
        seen.add(message.id)


def _bound(page_bytes: int, messages: int) -> None:
    limit = MAX_SINGLE_BYTES if messages == 1 else MAX_PAGE_BYTES
    if page_bytes > limit:
        raise PageError(f"the page is {page_bytes} bytes > {limit}")


def encode_page(page: HistoryPage) -> bytes:
    """The deterministic msgpack encoding; :class:`PageError` if the page breaks a bound."""
    _check(page)
    data = _encoder.encode(page)
    _bound(len(data), len(page.messages))
    # Round-trip through the decoder so that a page that could not be read back is never sealed.
    decode_page(data)
    return data


def decode_page(data: bytes) -> HistoryPage:
    """Decode under the bounds; :class:`PageError` on anything malformed or out of bounds."""
    if len(data) > MAX_SINGLE_BYTES:
        raise PageError(f"the page is {len(data)} bytes > {MAX_SINGLE_BYTES}")
    try:
        page = _decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise PageError(f"malformed page: {exc}") from None
    _check(page)
    _bound(len(data), len(page.messages))
    return page


def fits(message: MessageRecord) -> bool:
    """Whether ``message`` fits a page, an oversized one at most."""
    return len(_encoder.encode(message)) + _PAGE_OVERHEAD <= MAX_SINGLE_BYTES


def pack_pages(
    conv_id: str, messages: Iterable[MessageRecord], *, start_index: int = 0
) -> list[HistoryPage]:
    """Split messages, in the given order, into as few pages as the bounds allow; a message
    too large for a normal page gets an oversized page of its own.

    :class:`PageError` if one message alone would not fit even that (see :func:`fits`).
    """
    pages: list[HistoryPage] = []
    batch: list[MessageRecord] = []
    size = _PAGE_OVERHEAD
    for message in messages:
        if message.conv_id != conv_id:
            raise PageError(f"message {message.id!r} belongs to another conversation")
        length = len(_encoder.encode(message))
        if length + _PAGE_OVERHEAD > MAX_SINGLE_BYTES:
            raise PageError(f"message {message.id!r} alone exceeds a page")
        if length + _PAGE_OVERHEAD > MAX_PAGE_BYTES:  # oversized: a page of its own
            if batch:
                pages.append(HistoryPage(conv_id, start_index + len(pages), batch))
            pages.append(HistoryPage(conv_id, start_index + len(pages), [message]))
            batch, size = [], _PAGE_OVERHEAD
            continue
        if batch and (len(batch) == MAX_PAGE_MESSAGES or size + length > MAX_PAGE_BYTES):
            pages.append(HistoryPage(conv_id, start_index + len(pages), batch))
            batch, size = [], _PAGE_OVERHEAD
        batch.append(message)
        size += length
    if batch:
        pages.append(HistoryPage(conv_id, start_index + len(pages), batch))
    return pages


def seal_history_page(
    vault_key: bytes, account_id: str, page: HistoryPage, *, generation: int
) -> bytes:
    """Encode and seal ``page`` under its page id."""
    return seal_page(
        vault_key,
        account_id,
        history_page_id(page.conv_id, page.index),
        encode_page(page),
        generation=generation,
    )


def open_history_page(
    vault_key: bytes,
    account_id: str,
    conv_id: str,
    index: int,
    sealed: bytes,
    *,
    min_generation: int = 0,
) -> tuple[HistoryPage, int]:
    """Authenticate, then decode: the page and its generation.

    :class:`~tidings.crypto.errors.TamperedPage` / ``StalePage`` from the vault first, then
    :class:`PageError` if the authentic plaintext is not a valid page for (conv_id, index).
    """
    opened = open_page(
        vault_key,
        account_id,
        history_page_id(conv_id, index),
        sealed,
        min_generation=min_generation,
    )
    page = decode_page(opened.plaintext)
    if page.conv_id != conv_id or page.index != index:
        raise PageError("the page's content names another conversation or index")
    return page, opened.generation
