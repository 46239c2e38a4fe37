"""Grapheme clusters and emoji sequences: the pure part lives in the client core
(:mod:`tidings.client.graphemes`, which also checks reactions); re-exported here for the app's
text engine."""

from __future__ import annotations

from tidings.client.graphemes import (
    KEYCAP,
    VS15,
    VS16,
    ZWJ,
    clusters,
    emoji_key,
    is_regional_indicator,
    is_skin_tone,
    is_tag,
    wants_emoji_picture,
)

__all__ = [
    "KEYCAP",
    "VS15",
    "VS16",
    "ZWJ",
    "clusters",
    "emoji_key",
    "is_regional_indicator",
    "is_skin_tone",
    "is_tag",
    "wants_emoji_picture",
]
