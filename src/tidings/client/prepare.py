"""What goes into an attachment's ciphertext, by kind, and its description for the pointer.

Photos are re-encoded (upright, ≤ 1280 px, JPEG q80, no metadata) and voice notes transcoded to
Ogg Opus 24 kbps by :mod:`tidings.client.media`; videos and other files are sent as they are
(a video gets its dimensions, duration and a BlurHash of its first frame). Runs in a worker
thread: Pillow and PyAV block.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .media.files import detect_file


@dataclass(frozen=True, slots=True)
class Prepared:
    """The plaintext to encrypt (bytes, or the original file) and what the pointer says."""

    content_type: str
    size: int
    data: bytes | None = None
    path: Path | None = None
    width: int | None = None
    height: int | None = None
    blurhash: str | None = None
    duration_ms: int | None = None
    waveform: bytes | None = None

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path.open("rb")


def prepare(source: Path, kind: str) -> Prepared:
    """Prepare the file at ``source`` as an attachment of ``kind``."""
    if kind == "image":
        from .media.image import prepare_image

        image = prepare_image(source)
        return Prepared(
            image.content_type, len(image.data), data=image.data, width=image.width,
            height=image.height, blurhash=image.blurhash,
        )  # fmt: skip
    if kind == "voice":
        from .media.voice import transcode_voice

        note = transcode_voice(source)
        return Prepared(
            note.content_type, len(note.data), data=note.data, duration_ms=note.duration_ms,
            waveform=note.waveform,
        )  # fmt: skip
    info = detect_file(source)
    if kind == "video":
        from .media.video import probe_video

        video = probe_video(source)
        return Prepared(
            info.mime, info.size, path=source, width=video.width, height=video.height,
            blurhash=video.thumbnail.blurhash, duration_ms=video.duration_ms,
        )  # fmt: skip
    return Prepared(info.mime, info.size, path=source)
