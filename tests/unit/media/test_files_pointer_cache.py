"""Kind detection, the attachment pointer's bounds, the LRU download cache, quotas."""

from __future__ import annotations

import io
import os
import stat
import time
from pathlib import Path

import msgspec
import pytest
from PIL import Image

from tidings.client.media.cache import MediaCache
from tidings.client.media.errors import MediaTooLargeError
from tidings.client.media.files import detect_file, sanitize_file_name
from tidings.client.media.pointer import AttachmentPointer, decode_pointer, encode_pointer
from tidings.server.media.blobstore import BlobTooLargeError, new_blob_id
from tidings.server.media.quota import MemoryQuotaLedger, QuotaExceededError, QuotaManager
from tidings.server.media.settings import MediaSettings


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "mime", "kind"),
    [
        ("photo.png", _png(), "image/png", "image"),
        ("photo.jpg", _png(), "image/png", "image"),  # content wins over the extension
        ("doc.jpg", b"%PDF-1.7 ...", "application/pdf", "file"),
        ("clip.mov", b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime", "video"),
        ("clip.mp4", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "video/mp4", "video"),
        ("img.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image/heic", "image"),
        ("note.ogg", b"OggS\x00\x02" + bytes(22) + b"OpusHead", "audio/ogg; codecs=opus", "voice"),
        ("song.mp3", b"ID3\x04\x00" + bytes(20), "audio/mpeg", "file"),
        ("notes.txt", b"hello world", "text/plain", "file"),
        ("fake.png", b"just text", "application/octet-stream", "file"),  # extension alone
        ("anim.gif", b"GIF89a" + bytes(20), "image/gif", "file"),
    ],
)
def test_detect_kind(tmp_path: Path, name: str, content: bytes, mime: str, kind: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    info = detect_file(path)
    assert (info.name, info.size, info.mime, info.kind) == (name, len(content), mime, kind)


def test_sanitize_file_name() -> None:
    assert sanitize_file_name("../../etc/passwd") == "passwd"
    assert sanitize_file_name("C:\\Users\\a\\x.pdf") == "x.pdf"
    assert sanitize_file_name("a\x00b\nc.txt") == "abc.txt"
    assert sanitize_file_name("...") == "file"
    long = sanitize_file_name("é" * 300 + ".jpeg")
    assert long.endswith(".jpeg") and len(long.encode()) <= 255


def _pointer(**changes: object) -> AttachmentPointer:
    fields: dict[str, object] = {
        "blob_id": new_blob_id(), "key": os.urandom(64), "digest": os.urandom(32), "size": 1234,
        "content_type": "audio/ogg; codecs=opus", "kind": "voice", "duration_ms": 5000,
        "waveform": bytes(range(64)), "caption": "hi",
    }  # fmt: skip
    fields.update(changes)
    return AttachmentPointer(**fields)  # type: ignore[arg-type]


def test_pointer_round_trip_and_bounds() -> None:
    pointer = _pointer()
    assert decode_pointer(encode_pointer(pointer)) == pointer
    bad = [
        {"key": os.urandom(32)},
        {"digest": b"short"},
        {"size": -1},
        {"blob_id": "../x"},
        {"content_type": "not a mime"},
        {"kind": "sticker"},
        {"waveform": bytes(63)},
        {"caption": "x" * 5000},
        {"kind": "file", "waveform": bytes(64)},  # waveform only on voice
        {"file_name": "a/b"},
        {"width": 10},  # width without height
    ]
    for change in bad:
        raw = msgspec.msgpack.encode({**msgspec.structs.asdict(pointer), **change})
        with pytest.raises(msgspec.ValidationError):
            decode_pointer(raw)


def test_cache_lru_eviction_and_permissions(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache", max_bytes=1000)
    a, b, c = (new_blob_id() for _ in range(3))
    cache.put(a, b"a" * 400)
    time.sleep(0.01)
    cache.put(b, io.BytesIO(b"b" * 400))
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, b"c" * 400)  # evicts b, the least recently used
    assert a in cache and c in cache and b not in cache
    assert cache.total_bytes == 800 <= cache.max_bytes
    assert cache.read(c) == b"c" * 400
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    for entry in (tmp_path / "cache").iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    with pytest.raises(MediaTooLargeError):
        cache.put(new_blob_id(), b"x" * 1001)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([a, c])
    reopened = MediaCache(tmp_path / "cache", max_bytes=500)  # restart with a smaller budget
    assert c in reopened and a not in reopened  # the older entry went first
    assert reopened.total_bytes == 400
    assert reopened.delete(c)
    assert reopened.total_bytes == 0
    with pytest.raises(ValueError):
        reopened.get("../escape")


async def test_quota_accounting() -> None:
    settings = MediaSettings(max_blob_size=100, account_quota_bytes=250)
    quota = QuotaManager(MemoryQuotaLedger(), settings)
    with pytest.raises(BlobTooLargeError):
        await quota.reserve("alice", "b0", 101)
    await quota.reserve("alice", "b1", 100)
    await quota.reserve("alice", "b2", 100)
    await quota.reserve("alice", "b2", 100)  # idempotent
    with pytest.raises(QuotaExceededError):
        await quota.reserve("alice", "b3", 100)
    await quota.reserve("bob", "b4", 100)
    assert await quota.usage("alice") == 200
    await quota.release("b1")
    await quota.release("b1")  # released once only
    assert await quota.usage("alice") == 100
    await quota.reserve("alice", "b3", 100)
