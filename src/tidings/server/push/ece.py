"""RFC 8291 message encryption for Web Push: ``aes128gcm`` (RFC 8188) to a subscription's keys.

Guarantees: every call uses a fresh ephemeral P-256 key and a fresh random salt, so two
encryptions of the same wake are unlinkable to the push service; the output is one record
(our payloads are far below the 4096-byte record size), so nothing about the plaintext but
its padded length is visible.
"""

from __future__ import annotations

import os
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.server.push.jws import b64url_decode

#: the record size written in the header; one record holds the whole payload
RECORD_SIZE = 4096
#: RFC 8030 push services must accept at least this much body
MAX_PAYLOAD = RECORD_SIZE - 16 - 1 - (16 + 4 + 1 + 65)
_KEY_INFO = b"WebPush: info\x00"
_CEK_INFO = b"Content-Encoding: aes128gcm\x00"
_NONCE_INFO = b"Content-Encoding: nonce\x00"


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _uncompressed(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def encrypt(
    plaintext: bytes,
    p256dh: str,
    auth: str,
    *,
    pad_to: int = 0,
    _ephemeral: ec.EllipticCurvePrivateKey | None = None,
    _salt: bytes | None = None,
) -> bytes:
    """The ``aes128gcm`` body for ``plaintext`` to the subscription keys (base64url).

    ``pad_to`` pads the plaintext to at least that many bytes so that payload sizes do not
    tell wakes apart. Raises ``ValueError`` for malformed subscription keys or an oversized
    plaintext (the caller maps that to a permanent failure).
    """
    ua_public_bytes = b64url_decode(p256dh)
    auth_secret = b64url_decode(auth)
    if len(ua_public_bytes) != 65 or ua_public_bytes[0] != 4:
        raise ValueError("p256dh must be an uncompressed P-256 point (65 bytes)")
    if len(auth_secret) != 16:
        raise ValueError("auth must be 16 bytes")
    padding = max(0, pad_to - len(plaintext))
    if len(plaintext) + padding > MAX_PAYLOAD:
        raise ValueError("payload too large for one Web Push record")
    ua_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ua_public_bytes)
    as_private = _ephemeral or ec.generate_private_key(ec.SECP256R1())
    as_public_bytes = _uncompressed(as_private.public_key())
    ecdh_secret = as_private.exchange(ec.ECDH(), ua_public)
    ikm = _hkdf(auth_secret, ecdh_secret, _KEY_INFO + ua_public_bytes + as_public_bytes, 32)
    salt = _salt or os.urandom(16)
    cek = _hkdf(salt, ikm, _CEK_INFO, 16)
    nonce = _hkdf(salt, ikm, _NONCE_INFO, 12)
    # The last (only) record ends with the delimiter 0x02, then zero padding (RFC 8188 2).
    record = plaintext + b"\x02" + b"\x00" * padding
    ciphertext = AESGCM(cek).encrypt(nonce, record, None)
    header = salt + struct.pack("!IB", RECORD_SIZE, len(as_public_bytes)) + as_public_bytes
    return header + ciphertext
