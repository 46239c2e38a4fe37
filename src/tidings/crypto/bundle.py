"""A peer device's published keys, fetched from the server to start a session."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidKeyError
from .kem import KyberPublicKey
from .keys import IdentityKey, PublicKey

__all__ = ["PreKeyBundle"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PreKeyBundle:
    """libsignal's ``PreKeyBundle``.

    The one-time prekey is optional (``pre_key_id`` and ``pre_key_public`` together); the Kyber
    prekey (id, public key, signature together) makes the session PQXDH (version 4), its
    absence X3DH (version 3). Signatures are checked by ``process_prekey_bundle``.
    """

    registration_id: int
    device_id: int
    pre_key_id: int | None
    pre_key_public: PublicKey | None
    signed_pre_key_id: int
    signed_pre_key_public: PublicKey
    signed_pre_key_signature: bytes
    identity_key: IdentityKey
    kyber_pre_key_id: int | None = None
    kyber_pre_key_public: KyberPublicKey | None = None
    kyber_pre_key_signature: bytes | None = None

    def __post_init__(self) -> None:
        if (self.pre_key_id is None) != (self.pre_key_public is None):
            raise InvalidKeyError("one-time prekey id and public key must come together")
        kyber = (self.kyber_pre_key_id, self.kyber_pre_key_public, self.kyber_pre_key_signature)
        if any(part is None for part in kyber) and any(part is not None for part in kyber):
            raise InvalidKeyError("Kyber prekey id, public key and signature must come together")
