"""Videos for sending: duration, display dimensions and a first-frame thumbnail, read with PyAV.

Guarantees: the video itself is sent **as is** (encrypted by :mod:`tidings.crypto.attachment`
like any file, its container metadata included — it never leaves the device in clear). What is
produced here — a JPEG thumbnail built by :func:`.image.encode_jpeg` (pixels only, no metadata),
a BlurHash, the dimensions and the duration — travels only inside the encrypted message.

Only the container header and the packets up to the first decodable frame are read, with a bound
(:data:`MAX_PACKETS_FOR_THUMBNAIL`) so a hostile file cannot make the thumbnailer run for long.
An input without a video stream raises :class:`.errors.UnsupportedMediaError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Final

import av
import av.error
from av.video.stream import VideoStream
from PIL import Image

from .errors import UnsupportedMediaError
from .image import PreparedImage, encode_jpeg

__all__ = ["MAX_PACKETS_FOR_THUMBNAIL", "THUMBNAIL_SIDE", "VideoInfo", "probe_video"]

THUMBNAIL_SIDE: Final = 640
MAX_PACKETS_FOR_THUMBNAIL: Final = 600
_MAX_PACKETS_FOR_DURATION: Final = 2_000_000


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the pointer and the chat bubble need for a video."""

    width: int
    """Display width in pixels (after the stream's rotation)."""
    height: int
    duration_ms: int | None
    thumbnail: PreparedImage
    """First frame as a metadata-free JPEG ≤ :data:`THUMBNAIL_SIDE` px, with its BlurHash."""


def _rotated(image: Image.Image, rotation: float) -> Image.Image:
    quarter = round(rotation / 90) % 4
    if quarter == 0:
        return image
    # The display matrix angle is counter-clockwise; PIL's rotate is too.
    return image.rotate(quarter * 90, expand=True)


def _duration_ms(container: av.container.InputContainer, stream: VideoStream) -> int | None:
    if stream.duration is not None and stream.time_base is not None:
        return max(0, round(float(stream.duration * stream.time_base) * 1000))
    if container.duration is not None:
        return max(0, round(container.duration * 1000 / av.time_base))
    return None


def _duration_by_demuxing(source: str | os.PathLike[str] | IO[bytes]) -> int | None:
    """Last packet end time, for containers whose header has no duration (demux only)."""
    if hasattr(source, "seek"):
        source.seek(0)
    with av.open(source, "r") as container:
        stream = container.streams.video[0]
        base = stream.time_base or Fraction(1, 1000)
        end = None
        for count, packet in enumerate(container.demux(stream)):
            if count > _MAX_PACKETS_FOR_DURATION:
                break
            if packet.pts is not None:
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
        return None if end is None else max(0, round(float(end * base) * 1000))


def probe_video(
    source: str | os.PathLike[str] | IO[bytes], *, thumbnail_side: int = THUMBNAIL_SIDE
) -> VideoInfo:
    """Dimensions, duration and a first-frame thumbnail of the video at ``source``."""
    try:
        container = av.open(source, "r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise UnsupportedMediaError(f"not a readable video: {exc}") from exc
    with container:
        if not isinstance(container, av.container.InputContainer) or not container.streams.video:
            raise UnsupportedMediaError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = _duration_ms(container, stream)
        frame = None
        try:
            for count, packet in enumerate(container.demux(stream)):
                if count > MAX_PACKETS_FOR_THUMBNAIL:
                    break
                decoded = packet.decode()
                if decoded:
                    frame = decoded[0]
                    break
        except av.error.FFmpegError as exc:
            raise UnsupportedMediaError(f"video cannot be decoded: {exc}") from exc
        if frame is None:
            raise UnsupportedMediaError("no decodable frame near the start of the video")
        image = frame.to_image()  # type: ignore[no-untyped-call]
        picture = _rotated(image, getattr(frame, "rotation", 0) or 0)
    if duration is None:
        duration = _duration_by_demuxing(source)
    thumbnail = encode_jpeg(picture, max_side=thumbnail_side)
    return VideoInfo(
        width=picture.width, height=picture.height, duration_ms=duration, thumbnail=thumbnail
    )
