"""Messages the server has not accepted yet (``sending``, ``failed``: no seq, so no history
span) in one page of their own, :data:`PENDING_PAGE_ID`, so that a recovered device still
shows them with their status, as Signal's backups include unsent messages.

Guarantees, first: the page is sealed with the vault key like every page (id, account and
generation bound) and re-sealed whenever the set of unsent messages changes (the uploader
compares encodings on every run); a message leaves it when the server accepts it, because it
then belongs to its span. It holds at most :data:`~.pages.MAX_PAGE_MESSAGES` messages and
:data:`~.pages.MAX_PAGE_BYTES`: beyond that the oldest are kept (logged). A recovered device
shows a restored ``sending`` message as it was; it cannot send it (its outbox entry, sealed
for the old device's sessions, is not in the vault): the user sees it unsent and may write it
again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated

import msgspec

from tidings.crypto.vault import open_page

from .pages import MAX_PAGE_BYTES, MAX_PAGE_MESSAGES, MessageRecord, PageError

log = logging.getLogger(__name__)

PENDING_PAGE_ID = "account/pending"
PENDING_FORMAT = 1


class PendingPage(msgspec.Struct, frozen=True, array_like=True):
    messages: Annotated[list[MessageRecord], msgspec.Meta(max_length=MAX_PAGE_MESSAGES)]
    version: int = PENDING_FORMAT


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PendingPage)


def encode_pending(records: Sequence[MessageRecord]) -> bytes:
    """The page of ``records`` (oldest first), as many as fit."""
    kept: list[MessageRecord] = []
    size = 16
    for record in records:
        length = len(_encoder.encode(record))
        if len(kept) == MAX_PAGE_MESSAGES or size + length > MAX_PAGE_BYTES:
            log.warning("%d unsent messages do not fit the vault", len(records) - len(kept))
            break
        kept.append(record)
        size += length
    return _encoder.encode(PendingPage(kept))


def decode_pending(data: bytes) -> list[MessageRecord]:
    if len(data) > MAX_PAGE_BYTES:
        raise PageError("the pending page is too large")
    try:
        page = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise PageError(f"malformed pending page: {exc}") from None
    if page.version != PENDING_FORMAT:
        raise PageError(f"unknown pending page format {page.version}")
    if any(m.seq is not None for m in page.messages):
        raise PageError("a pending message with a seq")
    return page.messages


def open_pending(
    vault_key: bytes, account_id: str, sealed: bytes, *, min_generation: int = 0
) -> list[MessageRecord]:
    """Authenticate, then decode the unsent messages."""
    opened = open_page(
        vault_key, account_id, PENDING_PAGE_ID, sealed, min_generation=min_generation
    )
    return decode_pending(opened.plaintext)
