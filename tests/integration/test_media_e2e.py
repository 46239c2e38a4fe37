"""Attachments end to end, against a real server whose blobs are in its local store and, the
same suite again, in an S3 bucket (moto's server standing in for S3)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blurhash
import pytest
from PIL import Image
from tests.integration.conftest import ServerFactory
from tests.integration.media_kit import (
    MediaServer,
    arrived,
    clients,
    document,
    exif_photo,
    grep_tree,
    media_server,
    sent,
    tone_wav,
)

from tidings.client import Client, attachments
from tidings.client.mediaflow import AttachmentTampered
from tidings.client.types import TransferProgress
from tidings.protocol import routes
from tidings.protocol.media import UploadStatus

pytestmark = pytest.mark.timeout(240)

MARKER = "TIDINGS-MARKER-7f3c9a"


@pytest.fixture(params=["local", "s3"])
def media(request: pytest.FixtureRequest, server_factory: ServerFactory) -> Iterator[MediaServer]:
    with media_server(server_factory, request.param) as made:
        yield made


async def test_photo_arrives_upright_small_and_clean(media: MediaServer, tmp_path: Path) -> None:
    photo = exif_photo(tmp_path / "IMG_0001.jpg", MARKER)
    async with clients(media.server.url, tmp_path, "alice", "bob") as (alice, bob):
        conv = await alice.open_direct("bob")
        message = await alice.send_file(conv.id, photo, caption="the view")
        assert message.attachments[0].kind == "image"
        await sent(alice, message.id)
        got = await arrived(bob, conv.id, message.id)
        assert got.body == "the view"
        (attachment,) = got.attachments
        assert attachment.kind == "image" and attachment.content_type == "image/jpeg"
        # Upright: the sideways 4000x3000 photo is 3000x4000 once turned, then ≤ 1280 px.
        assert (attachment.width, attachment.height) == (960, 1280)
        path = await bob.download(message.id)
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and image.size == (960, 1280)
            assert not image.getexif() and "exif" not in image.info and "comment" not in image.info
            q = image.quantization  # type: ignore[attr-defined]
            assert 4 <= q[0][0] <= 8  # q80's first luminance coefficient is 6
            # the gradient runs left→right in the stored photo: turned, it runs top→bottom
            top, bottom = image.getpixel((480, 10)), image.getpixel((480, 1270))
            assert isinstance(top, tuple) and isinstance(bottom, tuple)
            assert top[0] < 60 and bottom[0] > 190
        assert MARKER.encode() not in data and b"MarkerCam" not in data
        assert attachment.blurhash is not None
        # Decoded at the attachment's aspect it shows the upright picture: red grows downwards.
        placeholder = blurhash.decode(attachment.blurhash, 24, 32)
        assert placeholder.size == (24, 32)
        high, low = placeholder.getpixel((12, 2)), placeholder.getpixel((12, 29))
        assert isinstance(high, tuple) and isinstance(low, tuple) and high[0] + 60 < low[0]
        size_flag = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".index(
            attachment.blurhash[0]
        )
        assert (size_flag % 9 + 1, size_flag // 9 + 1) == (4, 3)  # 4x3 components


async def test_voice_note_is_opus_with_a_waveform(media: MediaServer, tmp_path: Path) -> None:
    wav = tone_wav(tmp_path / "note.wav", seconds=6.0)
    async with clients(media.server.url, tmp_path, "alice", "bob") as (alice, bob):
        conv = await alice.open_direct("bob")
        message = await alice.send_voice(conv.id, wav)
        await sent(alice, message.id)
        got = await arrived(bob, conv.id, message.id)
        (voice,) = got.attachments
        assert voice.kind == "voice" and voice.content_type == "audio/ogg; codecs=opus"
        assert voice.duration_ms is not None and abs(voice.duration_ms - 6000) < 100
        assert voice.waveform is not None and len(voice.waveform) == 64
        wave = voice.waveform
        assert max(wave) == 255 and wave[0] < 40 and wave[-1] < 40 and min(wave[28:36]) > 200
        path = await bob.download(message.id)
        kbps = path.stat().st_size * 8 / 6.0 / 1000
        assert 20 <= kbps <= 28, kbps
        import av

        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            assert stream.codec_context.name == "opus" and stream.channels == 1
            assert stream.sample_rate == 48_000


async def test_document_and_never_in_clear(media: MediaServer, tmp_path: Path) -> None:
    doc = document(tmp_path / "report.pdf", MARKER)
    photo = exif_photo(tmp_path / "p.jpg", MARKER, size=(800, 600))
    async with clients(media.server.url, tmp_path, "alice", "bob") as (alice, bob):
        conv = await alice.open_direct("bob")
        first = await alice.send_file(conv.id, doc, caption=f"{MARKER} caption")
        second = await alice.send_file(conv.id, photo)
        for message in (first, second):
            await sent(alice, message.id)
            await arrived(bob, conv.id, message.id)
        got = await bob.message(first.id)
        assert got is not None
        (attachment,) = got.attachments
        assert attachment.kind == "file" and attachment.file_name == "report.pdf"
        assert attachment.content_type == "application/pdf"
        out = await bob.download(first.id, tmp_path / "bob-downloads")
        assert out.name == "report.pdf" and out.read_bytes() == doc.read_bytes()
        await bob.download(second.id)
    needles = [MARKER.encode(), b"MarkerCam", doc.read_bytes()[100:164]]
    assert grep_tree(media.server.data_dir, needles) == []
    assert not any(n in blob for blob in media.bucket_bytes() for n in needles)
    assert MARKER not in media.server.log_text()


async def test_a_tampered_blob_fails_the_digest_check(media: MediaServer, tmp_path: Path) -> None:
    async with clients(media.server.url, tmp_path, "alice", "bob") as (alice, bob):
        conv = await alice.open_direct("bob")
        message = await alice.send_file(conv.id, document(tmp_path / "a.pdf", "x", 50_000))
        await sent(alice, message.id)
        await arrived(bob, conv.id, message.id)
        _tamper(media, tmp_path)
        with pytest.raises(AttachmentTampered):
            await bob.download(message.id)
        got = await bob.message(message.id)
        assert got is not None and got.attachments[0].path is None
        assert not list((tmp_path / "bob" / "media" / "cache").iterdir())


def _tamper(media: MediaServer, tmp_path: Path) -> None:
    """Flip one byte in the middle of every stored blob."""
    del tmp_path
    if media.s3 is None:
        for path in (media.server.data_dir / "media" / "data").rglob("*"):
            if path.is_file() and path.stat().st_size:
                data = bytearray(path.read_bytes())
                data[len(data) // 2] ^= 1
                path.write_bytes(bytes(data))
        return
    listing = media.s3.list_objects_v2(Bucket="tidings-media", Prefix="tidings/blobs/")
    for obj in listing.get("Contents", []):
        body = bytearray(media.s3.get_object(Bucket="tidings-media", Key=obj["Key"])["Body"].read())
        body[len(body) // 2] ^= 1
        media.s3.put_object(Bucket="tidings-media", Key=obj["Key"], Body=bytes(body))


async def test_a_big_file_resumes_after_a_restart(media: MediaServer, tmp_path: Path) -> None:
    """An upload cut halfway (the client closed mid-upload) resumes after the app restarts,
    sending exactly the parts the server had not received, and none of the others."""
    part = 5 * 1024 * 1024 if media.backend == "s3" else 256 * 1024
    size = 16 * 1024 * 1024 if media.backend == "s3" else 12 * 1024 * 1024
    big = tmp_path / "big.bin"
    big.write_bytes(bytes((i * 7) % 256 for i in range(size)))
    root = tmp_path
    async with clients(media.server.url, root, "bob") as (bob,):
        pass
    alice = await Client.create_account(root / "alice", media.server.url, "alice")
    await alice.start()
    await alice.wait_synced(timeout=20)
    conv = await alice.open_direct("bob")
    seen: list[int] = []
    events = alice.events()

    async def watch() -> None:
        async for event in events:
            if isinstance(event, TransferProgress) and event.direction == "up":
                seen.append(event.done)

    watcher = asyncio.create_task(watch())
    message = await alice.send_file(conv.id, big)
    halfway = asyncio.get_running_loop().time() + 60
    while (not seen or max(seen) < size // 2) and asyncio.get_running_loop().time() < halfway:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    watcher.cancel()
    await alice.close()  # cut: the app goes away mid-upload
    again = await Client.open(root / "alice")
    # What the server holds now, and which parts the resumed upload PUTs.
    (row,) = attachments.rows(again._store.db, message.id)
    assert row.blob_id is not None and row.cipher_size is not None
    before = await again._rest.call(routes.UPLOAD_STATUS, UploadStatus, blob_id=row.blob_id)
    assert before.parts and not before.complete, "half the file went up before the cut"
    total_parts = -(-row.cipher_size // part)
    put_offsets: list[int] = []
    transfers = again._media.transfers
    original = transfers.put_part

    async def recording(url: str, path: Path, offset: int, length: int, *rest: Any) -> None:
        put_offsets.append(offset)
        await original(url, path, offset, length, *rest)

    transfers.put_part = recording  # type: ignore[method-assign]
    await again.start()
    await sent(again, message.id, within=120)
    numbers = set(before.parts)  # numbered from 1, like S3's
    missing = [(n - 1) * part for n in range(1, total_parts + 1) if n not in numbers]
    # Parts go up one at a time, in order: the part in flight when the app went away (the
    # first one missing above) may still land after that status was read, when the store
    # finishes the PUT whose answer nobody waits for. Then it is not sent again either.
    assert sorted(put_offsets) in (missing, missing[1:]), (before.parts, put_offsets)
    assert len(put_offsets) == len(set(put_offsets)), "no part was sent twice"
    async with clients(media.server.url, root / "again", "carol"):
        pass
    bob = await Client.open(root / "bob")
    await bob.start()
    try:
        await arrived(bob, conv.id, message.id, within=60)
        out = await bob.download(message.id)
        assert out.read_bytes() == big.read_bytes()
    finally:
        await bob.close()
        await again.close()
