"""Avatar pictures: the decrypted JPEG of a profile (``Client.known_profile``) made a texture
once per picture, for :class:`tidings.app.widgets.Avatar` (drawn round there)."""

from __future__ import annotations

import hashlib
import io
import logging

from kivy.core.image import Image as CoreImage
from kivy.graphics.texture import Texture

from tidings.client import Client
from tidings.client.types import Conversation

log = logging.getLogger(__name__)

#: textures by the SHA-256 of their JPEG bytes (pictures are ≤ 64 KiB, a few per chat list)
_TEXTURES: dict[bytes, Texture] = {}
_MAX = 256


def texture_of(data: bytes | None) -> Texture | None:
    """A texture of an avatar picture (None: no picture, or one that cannot be decoded)."""
    if not data:
        return None
    digest = hashlib.sha256(data).digest()
    found = _TEXTURES.get(digest)
    if found is not None:
        return found
    try:
        texture = CoreImage(io.BytesIO(data), ext="jpg").texture
    except Exception as exc:  # a damaged picture shows the initials instead
        log.info("cannot decode an avatar: %s", exc)
        return None
    if len(_TEXTURES) >= _MAX:
        _TEXTURES.clear()
    _TEXTURES[digest] = texture
    return texture


def avatar_of(client: Client | None, account_id: str | None) -> Texture | None:
    """The picture of `account_id` as this device knows it (no network)."""
    if client is None or not account_id:
        return None
    profile = client.known_profile(account_id)
    return texture_of(profile.avatar if profile is not None else None)


def peer_id(conv: Conversation, me: str) -> str | None:
    """The other person's account id of a direct chat (None: a group, notes to self)."""
    if conv.kind != "direct" or conv.note_to_self:
        return None
    others = [m.account_id for m in conv.members if m.account_id != me]
    return others[0] if others else None
