"""REST bodies of profiles, blocking and the device list (routes in
:mod:`tidings.protocol.routes`).

A profile is an opaque blob to the server: the client encrypts name, about text and avatar
under the account's profile key (``tidings.crypto.profile``) and shares that key with its
contacts inside end-to-end-encrypted messages. The server keeps the newest blob per account,
written only by the account's own devices, and hands it to any signed-in device that asks.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from tidings.protocol.frames import AccountId, DeviceId, Millis

#: Largest encrypted profile the server keeps (name, about text and a 64 KiB avatar, padded,
#: plus the nonce and tag).
MAX_PROFILE_BYTES = 72 * 1024
#: Most accounts one account may block.
MAX_BLOCKED = 10_000

ProfileVersion = Annotated[int, msgspec.Meta(ge=1, le=2**53)]


class ProfileUpload(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/profile``: the caller's encrypted profile. ``version`` must be above the
    stored one (409 ``conflict`` otherwise); it is bound into the ciphertext's AD."""

    version: ProfileVersion
    blob: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_PROFILE_BYTES)]


class Profile(msgspec.Struct):
    """``GET /v1/profiles/{account_id}`` (404 ``not_found`` when it has none)."""

    account_id: AccountId
    version: int
    blob: bytes
    updated_at: Millis


class BlockedAccount(msgspec.Struct):
    account_id: AccountId
    username: str
    blocked_at: Millis


class DeviceInfo(msgspec.Struct):
    """One device of the caller's account (``GET /v1/devices``)."""

    device_id: DeviceId
    #: the name given when it was created or linked
    name: str
    created_at: Millis
    #: when it last connected (ms; None: never)
    last_seen: Millis | None = None
