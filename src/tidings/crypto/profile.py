"""Profiles encrypted under a profile key, as Signal does.

Each account has a random 32-byte *profile key*. Its profile (display name, about text, avatar)
is serialised, padded to a size bucket (so its length says little about the name) and sealed
with AES-256-GCM under that key, with the account id and the profile version as associated
data: a blob cannot be passed off as another account's or replayed as another version. The
server stores the blob and never has the key; contacts receive the key inside
end-to-end-encrypted messages and can then open the blob. Rotating the key (after blocking
someone) makes the stored blob unreadable to whoever only has the old one.

Wire format of a sealed profile: ``version byte (1) || nonce (12) || ciphertext || tag (16)``.
"""

from __future__ import annotations

import os

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PROFILE_KEY_BYTES = 32
_NONCE_BYTES = 12
_FORMAT = 1
#: plaintext sizes are padded up to a multiple of this
PAD_BUCKET = 1024
MAX_NAME_CHARS = 64
MAX_ABOUT_CHARS = 280
MAX_AVATAR_BYTES = 64 * 1024


class ProfileError(Exception):
    """A sealed profile that does not open (wrong key, another account or version, altered)."""


class ProfileData(msgspec.Struct, omit_defaults=True):
    """What a profile holds. ``avatar`` is JPEG bytes (or empty)."""

    name: str = ""
    about: str = ""
    avatar: bytes = b""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ProfileData)


def new_profile_key() -> bytes:
    return os.urandom(PROFILE_KEY_BYTES)


def _ad(account_id: str, version: int) -> bytes:
    return b"tidings profile v1\0" + account_id.encode() + b"\0" + version.to_bytes(8, "big")


def _pad(data: bytes) -> bytes:
    # length prefix, then zeros up to the bucket
    framed = len(data).to_bytes(4, "big") + data
    size = -(-len(framed) // PAD_BUCKET) * PAD_BUCKET
    return framed + b"\0" * (size - len(framed))


def _unpad(data: bytes) -> bytes:
    if len(data) < 4:
        raise ProfileError("truncated profile")
    size = int.from_bytes(data[:4], "big")
    if size > len(data) - 4:
        raise ProfileError("bad profile padding")
    return data[4 : 4 + size]


def check(profile: ProfileData) -> None:
    """Raise ValueError when a field is over its limit."""
    if len(profile.name) > MAX_NAME_CHARS:
        raise ValueError(f"the name is over {MAX_NAME_CHARS} characters")
    if len(profile.about) > MAX_ABOUT_CHARS:
        raise ValueError(f"the about text is over {MAX_ABOUT_CHARS} characters")
    if len(profile.avatar) > MAX_AVATAR_BYTES:
        raise ValueError(f"the avatar is over {MAX_AVATAR_BYTES} bytes")


def seal_profile(key: bytes, account_id: str, version: int, profile: ProfileData) -> bytes:
    """The profile encrypted under ``key`` for ``account_id`` at ``version``."""
    if len(key) != PROFILE_KEY_BYTES:
        raise ValueError("a profile key is 32 bytes")
    check(profile)
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, _pad(_encoder.encode(profile)), _ad(account_id, version))
    return bytes((_FORMAT,)) + nonce + sealed


def open_profile(key: bytes, account_id: str, version: int, blob: bytes) -> ProfileData:
    """Decrypt a sealed profile; raises :class:`ProfileError` if it does not authenticate
    for this key, account and version, or is not a profile."""
    if len(key) != PROFILE_KEY_BYTES or len(blob) < 1 + _NONCE_BYTES + 16 or blob[0] != _FORMAT:
        raise ProfileError("not a sealed profile")
    nonce, body = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        padded = AESGCM(key).decrypt(nonce, body, _ad(account_id, version))
    except InvalidTag:
        raise ProfileError("the profile does not authenticate") from None
    try:
        profile = _decoder.decode(_unpad(padded))
        check(profile)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise ProfileError(f"not a profile: {exc}") from None
    return profile
