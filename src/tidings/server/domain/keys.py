"""Rules of the key directory: when an upload may set or replace the account's identity key,
and what a replaced identity takes with it (docs/e2ee.md)."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from tidings.protocol import ErrorCode
from tidings.protocol.keys import KeyUpload, KyberPreKey, SignedPreKey
from tidings.server.domain.records import Refused


class IdentityChange(enum.Enum):
    """What an upload does to the account's identity key."""

    #: the same key as before
    KEEP = "keep"
    #: the account's first identity key
    SET = "set"
    #: a new identity: key material signed by the old one is worthless, on every device, and
    #: the account's other devices (which hold the old identity) are removed entirely
    REPLACE = "replace"


def identity_change(current: bytes | None, upload: KeyUpload) -> IdentityChange:
    """What ``upload`` does to the account whose identity key is ``current`` (``None``: none
    yet). Raises ``Refused(CONFLICT)`` for a different key without ``replace_identity``."""
    if current == upload.identity_key:
        return IdentityChange.KEEP
    if current is None:
        return IdentityChange.SET
    if not upload.replace_identity:
        raise Refused(ErrorCode.CONFLICT, "the identity key differs from the account's")
    return IdentityChange.REPLACE


def replaced_devices(devices: Iterable[int], uploader: int) -> list[int]:
    """The devices of the account a replaced identity removes: all but the uploading one."""
    return [device for device in devices if device != uploader]


def first_upload_keys(upload: KeyUpload) -> tuple[SignedPreKey, KyberPreKey]:
    """The signed prekey and the last-resort Kyber prekey a device's first upload must carry
    (what a bundle needs besides one-time keys); ``Refused(BAD_FRAME)`` without them."""
    if upload.signed_prekey is None or upload.kyber_last_resort is None:
        raise Refused(
            ErrorCode.BAD_FRAME, "a device's first upload needs signed_prekey and kyber_last_resort"
        )
    return upload.signed_prekey, upload.kyber_last_resort
