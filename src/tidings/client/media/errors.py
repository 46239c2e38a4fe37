"""Typed errors of :mod:`tidings.client.media`; all derive from :class:`MediaError`."""

from __future__ import annotations

__all__ = [
    "MediaError",
    "MediaTooLargeError",
    "UnsupportedMediaError",
    "VoiceTooLongError",
]


class MediaError(Exception):
    """Base class of every error raised while preparing or caching media."""


class UnsupportedMediaError(MediaError):
    """The input cannot be read as the expected kind (not an image, no video/audio stream...)."""


class MediaTooLargeError(MediaError):
    """The input exceeds a bound (pixel count, file size, cache capacity)."""


class VoiceTooLongError(MediaTooLargeError):
    """A voice note is longer than the allowed maximum (15 minutes by default)."""

    def __init__(self, duration_s: float, max_s: float) -> None:
        super().__init__(f"voice note of {duration_s:.0f} s exceeds the {max_s:.0f} s maximum")
        self.duration_s = duration_s
        self.max_s = max_s
