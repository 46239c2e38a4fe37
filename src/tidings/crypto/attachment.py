"""Attachment encryption: a fresh random key per file, Signal's attachment scheme.

Guarantees, first:

* **Nothing leaves the device in clear.** The server stores only ``IV ‖ AES-256-CBC(...) ‖ MAC``;
  the 64-byte key, the digest of the ciphertext and the real plaintext size travel only inside
  the end-to-end-encrypted message (the attachment pointer).
* **Sizes leak only coarsely.** Before encryption the plaintext is zero-padded to a size bucket,
  ``max(541, floor(1.05 ** ceil(log_1.05(size))))`` as Signal does, so the stored length reveals
  the size to within about 5 %.
* **Verified before released.** :func:`decrypt_stream` first reads the whole ciphertext and checks
  the SHA-256 digest carried in the pointer, then the HMAC-SHA256 (both in constant time), and
  only then decrypts and writes plaintext. A digest mismatch or a bad MAC raises
  :class:`~tidings.crypto.errors.InvalidMacError`; a malformed, truncated or mis-padded ciphertext
  raises :class:`~tidings.crypto.errors.InvalidMessageError`; a key of the wrong length raises
  :class:`~tidings.crypto.errors.InvalidKeyError`. The second pass recomputes the MAC and raises
  again if the source changed in between, so a caller that writes to a temporary file and
  renames it only on success never exposes unauthenticated plaintext.

Layout: ``key = aes_key(32) ‖ mac_key(32)``; ``ciphertext = iv(16) ‖ AES-256-CBC(PKCS7(plaintext ‖
zeros)) ‖ HMAC-SHA256(mac_key, iv ‖ ct)(32)``; ``digest = SHA-256(ciphertext)``.

Both directions stream in fixed-size chunks, so memory stays constant for files of any size.
"""

from __future__ import annotations

import hmac
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from io import BytesIO
from typing import BinaryIO, Final

from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC
from cryptography.hazmat.primitives.padding import PKCS7

from .errors import InvalidKeyError, InvalidMacError, InvalidMessageError

__all__ = [
    "CHUNK_SIZE",
    "DIGEST_SIZE",
    "IV_SIZE",
    "KEY_SIZE",
    "MAC_SIZE",
    "AttachmentEncryptor",
    "EncryptedAttachment",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "generate_key",
    "padded_size",
]

KEY_SIZE: Final = 64
IV_SIZE: Final = 16
MAC_SIZE: Final = 32
DIGEST_SIZE: Final = 32
CHUNK_SIZE: Final = 256 * 1024
_BLOCK: Final = 16
_MIN_BUCKET: Final = 541


def generate_key() -> bytes:
    """A fresh random 64-byte attachment key (AES-256 key ‖ HMAC-SHA256 key)."""
    return os.urandom(KEY_SIZE)


def padded_size(size: int) -> int:
    """The bucket a plaintext of ``size`` bytes is zero-padded to before encryption.

    Signal's rule ``max(541, floor(1.05 ** ceil(log_1.05(size))))``; never below ``size``.
    """
    if size < 0:
        raise ValueError("size must be non-negative")
    if size <= 1:
        return _MIN_BUCKET
    bucket = math.floor(1.05 ** math.ceil(math.log(size) / math.log(1.05)))
    return max(_MIN_BUCKET, bucket, size)


def ciphertext_size(size: int) -> int:
    """The exact length of the stored ciphertext for a plaintext of ``size`` bytes."""
    body = padded_size(size)
    return IV_SIZE + (body // _BLOCK + 1) * _BLOCK + MAC_SIZE


def _split_key(key: bytes) -> tuple[bytes, bytes]:
    if len(key) != KEY_SIZE:
        raise InvalidKeyError(f"attachment key must be {KEY_SIZE} bytes, not {len(key)}")
    return key[:32], key[32:]


@dataclass(frozen=True, slots=True)
class EncryptedAttachment:
    """What the pointer needs after encryption: the key, the digest and both sizes."""

    key: bytes
    digest: bytes
    size: int
    ciphertext_size: int


class AttachmentEncryptor:
    """Incremental encryption: feed plaintext with :meth:`update`, end with :meth:`finalize`.

    Each call returns the ciphertext bytes ready so far (the IV comes with the first one), so an
    upload can stream without ever holding the whole file.
    """

    __slots__ = ("_aes", "_digest", "_done", "_header", "_key", "_mac", "_padder", "_size")

    def __init__(self, key: bytes | None = None, *, iv: bytes | None = None) -> None:
        self._key = generate_key() if key is None else key
        aes_key, mac_key = _split_key(self._key)
        iv = os.urandom(IV_SIZE) if iv is None else iv
        if len(iv) != IV_SIZE:
            raise InvalidKeyError(f"IV must be {IV_SIZE} bytes")
        self._aes = Cipher(AES(aes_key), CBC(iv)).encryptor()
        self._padder = PKCS7(128).padder()
        self._mac = hmac.new(mac_key, iv, sha256)
        self._digest = sha256(iv)
        self._header = iv
        self._size = 0
        self._done = False

    def _emit(self, block: bytes) -> bytes:
        ct = self._aes.update(self._padder.update(block)) if block else b""
        self._mac.update(ct)
        self._digest.update(ct)
        if self._header:
            ct, self._header = self._header + ct, b""
        return ct

    def update(self, data: bytes) -> bytes:
        """Encrypt the next plaintext bytes; returns the ciphertext ready so far."""
        if self._done:
            raise ValueError("encryptor already finalized")
        self._size += len(data)
        return self._emit(data)

    def finalize(self) -> tuple[bytes, EncryptedAttachment]:
        """Pad, close the cipher and append the MAC; returns the tail and the pointer facts."""
        if self._done:
            raise ValueError("encryptor already finalized")
        self._done = True
        out = bytearray()
        remaining = padded_size(self._size) - self._size
        zeros = bytes(min(remaining, CHUNK_SIZE))
        while remaining > 0:
            take = min(remaining, len(zeros))
            out += self._emit(zeros[:take])
            remaining -= take
        out += self._emit(b"")  # the IV, for an empty file whose padding was all emitted above
        ct = self._aes.update(self._padder.finalize()) + self._aes.finalize()
        self._mac.update(ct)
        mac = self._mac.digest()
        self._digest.update(ct + mac)
        out += ct + mac
        result = EncryptedAttachment(
            key=self._key,
            digest=self._digest.digest(),
            size=self._size,
            ciphertext_size=ciphertext_size(self._size),
        )
        return bytes(out), result


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    key: bytes | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> EncryptedAttachment:
    """Encrypt everything readable from ``src`` into ``dst`` in chunks; a fresh key if none."""
    encryptor = AttachmentEncryptor(key)
    while chunk := src.read(chunk_size):
        dst.write(encryptor.update(chunk))
    tail, result = encryptor.finalize()
    dst.write(tail)
    return result


def encrypt_bytes(plaintext: bytes, key: bytes | None = None) -> tuple[bytes, EncryptedAttachment]:
    """Encrypt a small in-memory attachment; returns the ciphertext and the pointer facts."""
    out = BytesIO()
    result = encrypt_stream(BytesIO(plaintext), out, key=key)
    return out.getvalue(), result


def _ranges(src: BinaryIO, start: int, end: int, chunk_size: int) -> Callable[[], bytes]:
    """A reader of ``src[start:end]`` in chunks; raises if the source ends early."""
    src.seek(start)
    left = end - start

    def read() -> bytes:
        nonlocal left
        if left <= 0:
            return b""
        chunk = src.read(min(chunk_size, left))
        if not chunk:
            raise InvalidMessageError("attachment ciphertext ended early")
        left -= len(chunk)
        return chunk

    return read


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    key: bytes,
    digest: bytes,
    size: int,
    chunk_size: int = CHUNK_SIZE,
) -> None:
    """Verify then decrypt the seekable ciphertext ``src`` into ``dst`` (exactly ``size`` bytes).

    Pass one checks the length, the SHA-256 ``digest`` and the MAC without writing anything;
    pass two decrypts. See the module docstring for the errors raised.
    """
    aes_key, mac_key = _split_key(key)
    if len(digest) != DIGEST_SIZE:
        raise InvalidMacError("attachment digest must be 32 bytes")
    if size < 0:
        raise InvalidMessageError("negative attachment size")
    total = src.seek(0, os.SEEK_END)
    body = total - IV_SIZE - MAC_SIZE
    if body < _BLOCK or body % _BLOCK:
        raise InvalidMessageError(f"attachment ciphertext has an impossible length {total}")
    if body - 1 < size:
        raise InvalidMessageError("attachment ciphertext is shorter than its stated size")

    # Pass one: digest of everything, MAC of iv ‖ ct; nothing is decrypted yet.
    whole = sha256()
    mac = hmac.new(mac_key, digestmod=sha256)
    read = _ranges(src, 0, total - MAC_SIZE, chunk_size)
    while chunk := read():
        whole.update(chunk)
        mac.update(chunk)
    tag = src.read(MAC_SIZE)
    whole.update(tag)
    if not hmac.compare_digest(whole.digest(), digest):
        raise InvalidMacError("attachment digest does not match the pointer")
    expected_tag = mac.digest()
    if not hmac.compare_digest(tag, expected_tag):
        raise InvalidMacError("attachment MAC does not verify")

    # Pass two: decrypt, unpad, drop the zero padding, re-check the MAC at the end.
    src.seek(0)
    iv = src.read(IV_SIZE)
    aes = Cipher(AES(aes_key), CBC(iv)).decryptor()
    unpadder = PKCS7(128).unpadder()
    mac = hmac.new(mac_key, iv, sha256)
    left = size
    read = _ranges(src, IV_SIZE, total - MAC_SIZE, chunk_size)
    try:
        while chunk := read():
            mac.update(chunk)
            plain = unpadder.update(aes.update(chunk))
            if left and plain:
                dst.write(plain[:left])
                left -= min(left, len(plain))
        plain = unpadder.update(aes.finalize()) + unpadder.finalize()
    except ValueError as exc:
        raise InvalidMessageError("attachment padding is invalid") from exc
    if left:
        if len(plain) < left:
            raise InvalidMessageError("attachment plaintext is shorter than its stated size")
        dst.write(plain[:left])
    if not hmac.compare_digest(mac.digest(), expected_tag):
        raise InvalidMacError("attachment ciphertext changed while it was decrypted")


def decrypt_bytes(ciphertext: bytes, *, key: bytes, digest: bytes, size: int) -> bytes:
    """Verify then decrypt an in-memory ciphertext; returns exactly ``size`` bytes."""
    out = BytesIO()
    decrypt_stream(BytesIO(ciphertext), out, key=key, digest=digest, size=size)
    return out.getvalue()
