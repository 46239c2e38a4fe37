"""Kind detection for outgoing files: content sniffing first, the extension as a fallback.

Guarantees: detection only reads the first bytes of the file locally; nothing is sent anywhere.
The content decides when it is recognised (a PDF named ``photo.jpg`` is a PDF); the extension
is used only for content without a known signature (text, documents). The returned name is a
sanitised base name (no directories, no control characters, at most 255 UTF-8 bytes).

Kinds, i.e. which pipeline applies: ``image`` (JPEG, PNG, WebP, HEIC/HEIF: re-encoded by
:mod:`.image`), ``video`` (MP4/MOV, WebM/Matroska: sent as is with a thumbnail from :mod:`.video`),
``voice`` (Ogg Opus, the voice-note format of :mod:`.voice`) and ``file`` for everything else,
including other audio and GIFs, which are sent untouched.
"""

from __future__ import annotations

import mimetypes
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .pointer import AttachmentKind

__all__ = [
    "VOICE_MIME",
    "FileInfo",
    "detect_file",
    "kind_for_mime",
    "sanitize_file_name",
    "sniff_mime",
]

SNIFF_BYTES: Final = 512
_OCTET: Final = "application/octet-stream"

_IMAGE_MIMES: Final = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"}
)
_VIDEO_MIMES: Final = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/x-matroska"})
#: The MIME type of a voice note (what :mod:`.voice` produces).
VOICE_MIME: Final = "audio/ogg; codecs=opus"

_FTYP_BRANDS: Final = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"hevc": "image/heic",
    b"avif": "image/avif",
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp",
    b"3g2a": "video/3gpp2",
}


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What an outgoing file is: its sanitised name, its size, its MIME type and its kind."""

    name: str
    size: int
    mime: str
    kind: AttachmentKind


def _sniff_ogg(head: bytes) -> str:
    if b"OpusHead" in head:
        return VOICE_MIME
    if b"theora" in head:
        return "video/ogg"
    return "audio/ogg"


def sniff_mime(head: bytes) -> str | None:
    """The MIME type the first bytes of a file prove, or ``None`` when they prove nothing."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return _FTYP_BRANDS.get(brand, "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"OggS"):
        return _sniff_ogg(head)
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head.startswith(b"\x1f\x8b"):
        return "application/gzip"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "application/x-7z-compressed"
    if head.startswith(b"BM") and len(head) > 14:
        return "image/bmp"
    return None


def kind_for_mime(mime: str) -> AttachmentKind:
    """The pipeline for a MIME type (see the module docstring)."""
    base = mime.split(";", 1)[0].strip().lower()
    if base in _IMAGE_MIMES:
        return "image"
    if base in _VIDEO_MIMES:
        return "video"
    if mime.replace(" ", "").lower() == VOICE_MIME.replace(" ", ""):  # Opus in Ogg
        return "voice"
    return "file"


def sanitize_file_name(name: str) -> str:
    """A safe base name: directories, control characters and overlong tails removed."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".")
    if not name:
        return "file"
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    while len((stem + suffix).encode()) > 255:
        stem = stem[:-1]
    return (stem + suffix) or "file"


def detect_file(path: str | os.PathLike[str], *, name: str | None = None) -> FileInfo:
    """Name, size, MIME type and kind of the file at ``path`` (``name`` overrides its name)."""
    p = Path(path)
    with p.open("rb") as f:
        head = f.read(SNIFF_BYTES)
        size = os.fstat(f.fileno()).st_size
    display = sanitize_file_name(name if name is not None else p.name)
    sniffed = sniff_mime(head)
    if sniffed is not None:
        mime = sniffed
    else:
        guessed, _ = mimetypes.guess_type(display, strict=False)
        mime = guessed or _OCTET
        if kind_for_mime(mime) != "file":
            # An extension alone never routes a file into a media pipeline.
            mime = _OCTET
    return FileInfo(name=display, size=size, mime=mime, kind=kind_for_mime(mime))
