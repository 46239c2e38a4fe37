"""Linking a new device: the link code and the sealed provisioning message (docs/e2ee.md).

The new device makes an ephemeral X25519 key pair; its link code is
``<provisioning id>.<base64url(ephemeral public key)>``. The approving device seals the
account's identity to that key: an ephemeral X25519 key of its own, HKDF-SHA256 over the shared
secret (salt: both public keys), AES-256-GCM. The sealed bytes are
``sender public key (33) ‖ nonce (12) ‖ ciphertext+tag``; the server only ever sees them.
"""

from __future__ import annotations

import base64
import os

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tidings.crypto import PrivateKey, PublicKey, SignalProtocolError
from tidings.crypto.symmetric import hkdf_sha256

_INFO = b"Tidings provisioning v1"
_NONCE = 12
_KEY = 33


class ProvisionMessage(msgspec.Struct, forbid_unknown_fields=False):
    """What the approving device hands to the new one."""

    account_id: str
    username: str
    #: the account's serialized IdentityKeyPair
    identity: bytes
    #: the history vault's key and wrapped key, when the account has backup enabled: the new
    #: device reads older history from the vault (older clients ignore these fields)
    vault_key: bytes | None = None
    vault_wrapped: bytes | None = None


class LinkCodeError(ValueError):
    """A link code or a sealed message that cannot be used."""


def link_code(provisioning_id: str, ephemeral_public: bytes) -> str:
    encoded = base64.urlsafe_b64encode(ephemeral_public).rstrip(b"=").decode()
    return f"{provisioning_id}.{encoded}"


def parse_link_code(code: str) -> tuple[str, bytes]:
    """(provisioning id, the new device's ephemeral public key)."""
    provisioning_id, dot, encoded = code.strip().rpartition(".")
    if not dot or not provisioning_id:
        raise LinkCodeError("a link code is <id>.<key>")
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        raise LinkCodeError("the key part of the link code is not base64url") from None
    if len(key) != _KEY:
        raise LinkCodeError("the key part of the link code has the wrong length")
    return provisioning_id, key


def _key(shared: bytes, sender: bytes, receiver: bytes) -> bytes:
    return hkdf_sha256(shared, _INFO, 32, salt=sender + receiver)


def seal(message: ProvisionMessage, receiver_public: bytes) -> bytes:
    """Encrypt ``message`` to the new device's ephemeral key."""
    try:
        receiver = PublicKey.deserialize(receiver_public)
    except SignalProtocolError:
        raise LinkCodeError("not a Curve25519 public key") from None
    ephemeral = PrivateKey.generate()
    sender = ephemeral.public_key().serialize()
    key = _key(ephemeral.calculate_agreement(receiver), sender, receiver_public)
    nonce = os.urandom(_NONCE)
    ciphertext = AESGCM(key).encrypt(nonce, msgspec.msgpack.encode(message), sender)
    return sender + nonce + ciphertext


def open_sealed(sealed: bytes, receiver: PrivateKey) -> ProvisionMessage:
    """Decrypt what :func:`seal` made for ``receiver``; :class:`LinkCodeError` if it fails."""
    if len(sealed) < _KEY + _NONCE + 16:
        raise LinkCodeError("sealed provisioning message too short")
    sender, nonce, ciphertext = sealed[:_KEY], sealed[_KEY : _KEY + _NONCE], sealed[_KEY + _NONCE :]
    try:
        shared = receiver.calculate_agreement(PublicKey.deserialize(sender))
        key = _key(shared, sender, receiver.public_key().serialize())
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, sender)
        return msgspec.msgpack.decode(plaintext, type=ProvisionMessage)
    except (SignalProtocolError, InvalidTag, msgspec.DecodeError, msgspec.ValidationError):
        raise LinkCodeError("the provisioning message does not open") from None
