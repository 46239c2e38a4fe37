"""The Double Ratchet's key derivations, with libsignal's labels and layouts.

* Session start: ``HKDF(master secret, info)`` → root key ‖ chain key, where ``info`` is
  ``WhisperText`` (v3) or ``WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024`` (v4).
* Root step (a DH ratchet turn): ``HKDF(salt=root, DH(ours, theirs), "WhisperRatchet")``
  → new root key ‖ new chain key.
* Symmetric step (:func:`chain_step`): message-key seed = ``HMAC(chain key, 0x01)``, next
  chain key = ``HMAC(chain key, 0x02)``.
* Message keys: ``HKDF(seed, "WhisperMessageKeys", 80)`` → AES key ‖ MAC key ‖ IV.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Final, NamedTuple

from .keys import PrivateKey, PublicKey
from .symmetric import HmacKey, hkdf_sha256, hmac_sha256_pair

__all__ = [
    "KDF_INFO_V3",
    "KDF_INFO_V4",
    "MessageKeys",
    "chain_step",
    "derive_initial_keys",
    "message_key_seed",
    "message_keys",
    "next_chain_key",
    "root_step",
]

KDF_INFO_V3: Final = b"WhisperText"
KDF_INFO_V4: Final = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
_RATCHET_INFO: Final = b"WhisperRatchet"
_MESSAGE_KEYS_INFO: Final = b"WhisperMessageKeys"
_ZERO_SALT_KEY: Final = HmacKey(bytes(32))
_INFO_1: Final = _MESSAGE_KEYS_INFO + b"\x01"
_INFO_2: Final = _MESSAGE_KEYS_INFO + b"\x02"
_INFO_3: Final = _MESSAGE_KEYS_INFO + b"\x03"
_PAD_32: Final = bytes(32)  # a 32-byte HMAC key's zeros up to the 64-byte block
_INNER_PAD: Final = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD: Final = bytes(byte ^ 0x5C for byte in range(256))


class MessageKeys(NamedTuple):
    """The keys that protect one message."""

    cipher_key: bytes  # AES-256 key, 32 bytes
    mac_key: bytes  # HMAC-SHA256 key, 32 bytes
    iv: bytes  # AES-CBC IV, 16 bytes

    def __repr__(self) -> str:  # keys stay out of logs
        return "MessageKeys(<secret>)"


def derive_initial_keys(master_secret: bytes, version: int) -> tuple[bytes, bytes]:
    """Root key and first chain key from the X3DH (v3) / PQXDH (v4) master secret."""
    info = KDF_INFO_V4 if version >= 4 else KDF_INFO_V3
    okm = hkdf_sha256(master_secret, info, 64)
    return okm[:32], okm[32:]


def root_step(
    root_key: bytes, their_ratchet: PublicKey, our_ratchet: PrivateKey
) -> tuple[bytes, bytes]:
    """One DH ratchet turn: ``(new root key, new chain key)``."""
    okm = hkdf_sha256(our_ratchet.calculate_agreement(their_ratchet), _RATCHET_INFO, 64, root_key)
    return okm[:32], okm[32:]


def chain_step(chain_key: bytes) -> tuple[bytes, bytes]:
    """``(message-key seed at the chain's index, chain key at the next index)``."""
    return hmac_sha256_pair(chain_key, b"\x01", b"\x02")


def message_key_seed(chain_key: bytes) -> bytes:
    """The seed of the message key at the chain's current index."""
    return HmacKey(chain_key).digest(b"\x01")


def next_chain_key(chain_key: bytes) -> bytes:
    """The chain key at the next index."""
    return HmacKey(chain_key).digest(b"\x02")


def message_keys(seed: bytes) -> MessageKeys:
    """Expand a message-key seed into AES key, MAC key and IV (80 bytes of HKDF output)."""
    # HKDF inlined (this runs for every message): the zero salt's pads hashed once, the
    # 32-byte PRK padded once and each block hashed in one go, as hkdf_sha256 does.
    block = _ZERO_SALT_KEY.digest(seed) + _PAD_32
    inner = block.translate(_INNER_PAD)
    outer = block.translate(_OUTER_PAD)
    t1 = sha256(outer + sha256(inner + _INFO_1).digest()).digest()
    t2 = sha256(outer + sha256(inner + t1 + _INFO_2).digest()).digest()
    t3 = sha256(outer + sha256(inner + t2 + _INFO_3).digest()).digest()
    return MessageKeys(t1, t2, t3[:16])
