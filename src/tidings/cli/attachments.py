"""How the ``tidings`` command shows attachments: ``--json`` metadata and the short tags of a
human line (``[photo 960\u00d71280 63 KB]``, ``[voice 0:06]``, ``[file report.pdf 1.2 MB]``).

Everything here comes from the end-to-end-encrypted pointer, i.e. from the sender: a file name
is shown with its control characters made visible (:func:`tidings.cli.render.safe`).
"""

from __future__ import annotations

from typing import Any

from tidings.client.types import Attachment, Message

#: between width and height (U+00D7 MULTIPLICATION SIGN)
TIMES = "\u00d7"
#: what a kind is called in a human line
_NAMES = {"image": "photo", "video": "video", "voice": "voice", "file": "file"}


def human_size(size: int) -> str:
    """``512 B``, ``63 KB``, ``1.2 MB`` (binary multiples, as file managers count)."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{round(size / 1024)} KB"
    if size < 1024**3:
        return f"{size / 1024**2:.1f} MB"
    return f"{size / 1024**3:.1f} GB"


def duration(ms: int) -> str:
    """``0:06``, ``12:40``, ``1:02:03``."""
    seconds = round(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    """Metadata of one attachment for ``--json`` (``path``: the plaintext, once downloaded)."""
    return {
        "id": attachment.id,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "file_name": attachment.file_name,
        "width": attachment.width,
        "height": attachment.height,
        "duration_ms": attachment.duration_ms,
        "blurhash": attachment.blurhash,
        "waveform": list(attachment.waveform) if attachment.waveform is not None else None,
        "state": attachment.state,
        "path": str(attachment.path) if attachment.path is not None else None,
    }


def attachment_tag(attachment: Attachment) -> str:
    """The short tag of one attachment in a human line."""
    from tidings.cli.render import safe

    words = [_NAMES.get(attachment.kind, attachment.kind)]
    if attachment.kind == "file" and attachment.file_name:
        words.append(safe(attachment.file_name))
    if attachment.kind in ("voice", "video") and attachment.duration_ms is not None:
        words.append(duration(attachment.duration_ms))
    if attachment.kind in ("image", "video") and attachment.width and attachment.height:
        words.append(f"{attachment.width}{TIMES}{attachment.height}")
    if attachment.kind != "voice":
        words.append(human_size(attachment.size))
    if attachment.state == "failed":
        words.append("upload failed")
    return f"[{' '.join(words)}]"


def attachment_tags(message: Message) -> str:
    """Every attachment's tag, space-separated ("" for a message without any)."""
    return " ".join(attachment_tag(a) for a in message.attachments)
