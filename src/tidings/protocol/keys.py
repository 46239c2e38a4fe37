"""REST bodies of the key directory and device provisioning (docs/e2ee.md); the routes are in
:mod:`tidings.protocol.routes`.

Keys travel in libsignal's serialization: Curve25519 public keys ``0x05 ‖ 32 bytes`` (33),
Kyber1024 public keys ``0x08 ‖ 1568 bytes`` (1569), XEdDSA signatures 64 bytes. The server checks
sizes and type bytes only: it never imports the crypto library, so clients verify signatures.

What the routes do beyond their bodies:

- ``bundles`` claims one one-time prekey and one one-time Kyber prekey per device, atomically;
  it and ``claim_keys`` (several accounts at once, for groups) are rate-limited per requester.
- ``remove_device``: a device removes another device of its own account: its token stops
  working (401), its WebSocket is closed with 4401, its queues and keys are deleted; 403
  ``forbidden`` for the calling device itself, 404 for a device the account does not have. A
  KeyUpload with ``replace_identity`` removes all other devices the same way.
- ``new_provisioning`` needs no token. ``fetch_provisioning`` takes ``Authorization: Bearer
  <provisioning secret>`` and answers ProvisionedDevice once approved (200, then gone), 202
  ApiError ``pending`` before, 404 after expiry or once fetched.
- ``approve_provisioning``: an existing device of the account approves; a provisioning id can be
  approved once.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from tidings.protocol.frames import AccountId, DeviceId, Millis
from tidings.protocol.rest import DeviceToken

CurvePublicKey = Annotated[bytes, msgspec.Meta(min_length=33, max_length=33)]
KyberPublicKey = Annotated[bytes, msgspec.Meta(min_length=1569, max_length=1569)]
Signature = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
KeyId = Annotated[int, msgspec.Meta(ge=0, le=2**24 - 1)]
RegistrationId = Annotated[int, msgspec.Meta(ge=1, le=16380)]

#: Most one-time prekeys (of each kind) one upload may carry and the server keeps per device.
MAX_PREKEYS_PER_UPLOAD = 200
MAX_STORED_PREKEYS = 1000
#: The client uploads more one-time prekeys when the server holds fewer than this.
PREKEY_REFILL_BELOW = 20


class SignedPreKey(msgspec.Struct):
    id: KeyId
    key: CurvePublicKey
    signature: Signature


class KyberPreKey(msgspec.Struct):
    id: KeyId
    key: KyberPublicKey
    signature: Signature


class OneTimePreKey(msgspec.Struct):
    id: KeyId
    key: CurvePublicKey


class KeyUpload(msgspec.Struct, forbid_unknown_fields=True):
    """The identity key is per account: every device uploads the same one. A different key is
    refused with ``conflict`` unless ``replace_identity`` is set, which also removes the
    account's other devices entirely, as DELETE /v1/devices/{id} does (they must be linked
    again)."""

    identity_key: CurvePublicKey
    registration_id: RegistrationId
    signed_prekey: SignedPreKey | None = None
    kyber_last_resort: KyberPreKey | None = None
    prekeys: Annotated[list[OneTimePreKey], msgspec.Meta(max_length=MAX_PREKEYS_PER_UPLOAD)] = []
    kyber_prekeys: Annotated[
        list[KyberPreKey], msgspec.Meta(max_length=MAX_PREKEYS_PER_UPLOAD)
    ] = []
    replace_identity: bool = False


class KeyCounts(msgspec.Struct):
    """What the server still holds for the calling device."""

    prekeys: int
    kyber_prekeys: int
    signed_prekey_id: int | None = None
    #: when the current signed prekey was uploaded (the client rotates it every 7 days)
    signed_prekey_uploaded_at: Millis | None = None


class DeviceBundle(msgspec.Struct):
    device_id: DeviceId
    registration_id: RegistrationId
    signed_prekey: SignedPreKey
    #: a Kyber one-time prekey if one is left, else the device's last-resort Kyber prekey
    kyber_prekey: KyberPreKey
    #: ``None`` when the device has run out of one-time prekeys
    prekey: OneTimePreKey | None = None
    kyber_is_last_resort: bool = False


class PreKeyBundles(msgspec.Struct):
    account_id: AccountId
    identity_key: CurvePublicKey
    devices: list[DeviceBundle]


class ClaimKeys(msgspec.Struct, forbid_unknown_fields=True):
    #: account id → device ids to claim for (empty list: every device of that account)
    devices: Annotated[dict[AccountId, list[DeviceId]], msgspec.Meta(max_length=1000)]


class DeviceMap(msgspec.Struct):
    #: account id → its current device ids, for every member of the conversation
    devices: dict[AccountId, list[int]]


#: a provisioning secret the new device made itself (256 random bits, base64url, 43 chars)
ProvisioningSecret = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{43}$")]


class NewProvisioning(msgspec.Struct, forbid_unknown_fields=True):
    """A new device asks to be linked. With ``secret`` and ``token`` (chosen by the new device
    before its first try) every step is safe to retry: the same key and secret answer the same
    request, a repeated approval with the same sealed message answers the same device, and the
    result can be fetched again until it expires (its ``token`` is then empty: the device
    already has it). Without them the server makes both (older clients)."""

    #: the new device's ephemeral X25519 public key (33 bytes, 0x05 prefix)
    ephemeral_key: CurvePublicKey
    secret: ProvisioningSecret | None = None
    token: DeviceToken | None = None


class Provisioning(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
    #: lets the new device fetch the result; it is never shown to the approving device
    secret: str
    expires_at: Millis


class ApproveDevice(msgspec.Struct, forbid_unknown_fields=True):
    device_name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    #: the ephemeral key of the new device, as the approving device read it from the link
    #: code; the server refuses the approval if it differs from the one it was given
    ephemeral_key: CurvePublicKey
    #: the provisioning message, encrypted by the approving device to ``ephemeral_key``
    sealed: Annotated[bytes, msgspec.Meta(max_length=64 * 1024)]


class ApprovedDevice(msgspec.Struct):
    account_id: AccountId
    device_id: DeviceId


class ProvisionedDevice(msgspec.Struct):
    account_id: AccountId
    username: str
    device_id: DeviceId
    #: the device's token; empty when the new device chose it (``NewProvisioning.token``)
    token: str
    sealed: bytes
