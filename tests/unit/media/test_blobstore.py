"""One suite for both blob stores: the local store (behind uvicorn) and S3 (moto's server).

moto does not check SigV4 signatures or expiry, so signature and expiry enforcement is tested on
the local store only (the tests marked "local only" below).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import httpx
import pytest
from botocore.config import Config

from tidings.server.media.blobstore import (
    BlobError,
    BlobNotFoundError,
    BlobStateError,
    BlobTooLargeError,
    UploadIncompleteError,
)
from tidings.server.media.gc import collect_garbage
from tidings.server.media.handlers import BlobRequest, handle_blob_request
from tidings.server.media.local import LocalBlobStore
from tidings.server.media.s3 import S3BlobStore
from tidings.server.media.settings import LocalStoreSettings, MediaSettings, S3Settings

from .blobenv import Backend, FakeClock, MiB, asgi_app, cut_put, free_port, serve

MEDIA = MediaSettings(max_blob_size=20 * MiB, resumable_threshold=5 * MiB, part_size=5 * MiB)
MARKER = b"CIPHERTEXT-MARKER-\x00\xff"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def _local_backend(tmp_path: Path) -> Iterator[Backend]:
    clock = FakeClock()
    port = free_port()
    cfg = LocalStoreSettings(tmp_path / "blobs", f"http://127.0.0.1:{port}/v1/blobs", MEDIA)
    store = LocalBlobStore(cfg, clock=clock)
    with serve(asgi_app(store), port):
        yield Backend("local", store, clock, root=cfg.root)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        with _local_backend(tmp_path) as local:
            yield local
        return
    clock = FakeClock()
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"b-{os.urandom(4).hex()}"
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}), **creds,
    )  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    settings = S3Settings(
        bucket=bucket, endpoint_url=endpoint, access_key_id="testing",
        secret_access_key="testing", media=MEDIA,
    )  # fmt: skip
    yield Backend("s3", S3BlobStore(settings, clock=clock), clock, s3=s3, bucket=bucket)


def payload(size: int) -> bytes:
    body = os.urandom(max(0, size - len(MARKER)))
    return (MARKER + body)[:size]


async def put(client: httpx.AsyncClient, url: str, data: bytes) -> httpx.Response:
    return await client.put(url, content=data, headers={"content-type": "application/octet-stream"})


async def upload_all(backend: Backend, data: bytes) -> str:
    slot = await backend.store.create_upload(len(data))
    async with httpx.AsyncClient(timeout=30) as client:
        for part in slot.parts:
            r = await put(client, part.url, data[part.offset : part.offset + part.length])
            assert r.status_code == 200, r.text
    await backend.store.complete_upload(slot.blob_id)
    return str(slot.blob_id)


async def test_upload_download_byte_identical(backend: Backend) -> None:
    data = payload(100_000)
    slot = await backend.store.create_upload(len(data))
    assert len(slot.blob_id) >= 22 and not slot.resumable and len(slot.parts) == 1
    with pytest.raises(BlobStateError):
        await backend.store.presign_download(slot.blob_id)  # not complete yet
    async with httpx.AsyncClient(timeout=30) as client:
        r = await put(client, slot.parts[0].url, data)
        assert r.status_code == 200, r.text
        info = await backend.store.complete_upload(slot.blob_id)
        assert info.size == len(data) and info.completed_at is not None
        url = await backend.store.presign_download(slot.blob_id)
        got = await client.get(url)
    assert got.status_code == 200 and got.content == data
    stored = backend.stored_bytes(slot.blob_id)
    assert stored == data and stored.startswith(MARKER)  # stored exactly as uploaded


async def test_oversize_refused(backend: Backend) -> None:
    with pytest.raises(BlobTooLargeError):
        await backend.store.create_upload(MEDIA.max_blob_size + 1)
    with pytest.raises(BlobError):
        await backend.store.create_upload(0)


async def test_wrong_length_refused(backend: Backend) -> None:
    data = payload(50_000)
    slot = await backend.store.create_upload(len(data))
    async with httpx.AsyncClient(timeout=30) as client:
        r = await put(client, slot.parts[0].url, data[:-1000])
        if r.status_code == 200:  # moto stores it: complete() must refuse the wrong length
            with pytest.raises(BlobStateError):
                await backend.store.complete_upload(slot.blob_id)
        else:
            assert r.status_code in (400, 403)
            with pytest.raises(UploadIncompleteError):
                await backend.store.complete_upload(slot.blob_id)
        # The slot stays usable with the right bytes.
        fresh = await backend.store.presign_parts(slot.blob_id)
        assert (await put(client, fresh.parts[0].url, data)).status_code == 200
    await backend.store.complete_upload(slot.blob_id)
    assert backend.stored_bytes(slot.blob_id) == data


async def test_cut_upload_resumes_without_restarting(backend: Backend) -> None:
    data = payload(11 * MiB)
    slot = await backend.store.create_upload(len(data))
    assert slot.resumable and [p.length for p in slot.parts] == [5 * MiB, 5 * MiB, MiB]
    first, second = slot.parts[0], slot.parts[1]
    async with httpx.AsyncClient(timeout=60) as client:
        assert (await put(client, first.url, data[: first.length])).status_code == 200
        await cut_put(second.url, data[second.offset : second.offset + second.length], 2 * MiB)
        status = await backend.store.upload_status(slot.blob_id)
        assert status.received == 5 * MiB and status.completed_parts == {1}
        with pytest.raises(UploadIncompleteError):
            await backend.store.complete_upload(slot.blob_id)
        resumed = await backend.store.presign_parts(slot.blob_id)
        assert [p.number for p in resumed.parts] == [2, 3]  # part 1 is not sent again
        for part in resumed.parts:
            for _ in range(50):  # the server may still be noticing the cut connection
                r = await put(client, part.url, data[part.offset : part.offset + part.length])
                if r.status_code != 409:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 200, r.text
        await backend.store.complete_upload(slot.blob_id)
        got = await client.get(await backend.store.presign_download(slot.blob_id))
    assert got.content == data
    assert backend.stored_bytes(slot.blob_id) == data


async def test_gc_deletes_abandoned_then_expired(backend: Backend) -> None:
    abandoned = await backend.store.create_upload(1000)
    kept = await upload_all(backend, payload(2000))
    backend.clock.advance(23 * 3600)
    assert (await collect_garbage(backend.store, now=backend.clock())).deleted == []
    backend.clock.advance(2 * 3600)
    report = await collect_garbage(backend.store, now=backend.clock())
    assert [(b.blob_id, b.reason) for b in report.deleted] == [(abandoned.blob_id, "abandoned")]
    with pytest.raises(BlobNotFoundError):
        await backend.store.upload_status(abandoned.blob_id)
    assert await backend.store.info(kept) is not None
    backend.clock.advance(45 * 24 * 3600)
    report = await collect_garbage(backend.store, now=backend.clock())
    assert [(b.blob_id, b.reason) for b in report.deleted] == [(kept, "retention")]
    assert await backend.store.info(kept) is None


# -- local only: signatures, expiry, reuse, ranges, permissions -------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Backend]:
    """The local store alone: moto accepts tampered or expired presigned URLs, so signature
    and expiry enforcement is tested on the store that enforces them."""
    with _local_backend(tmp_path) as store:
        yield store


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_local_expired_urls_refused(local: Backend) -> None:
    data = payload(3000)
    slot = await local.store.create_upload(len(data))
    local.clock.advance(15 * 60 + 1)
    async with httpx.AsyncClient() as client:
        assert (await put(client, slot.parts[0].url, data)).status_code == 403
        fresh = await local.store.presign_parts(slot.blob_id)
        assert (await put(client, fresh.parts[0].url, data)).status_code == 200
        await local.store.complete_upload(slot.blob_id)
        url = await local.store.presign_download(slot.blob_id)
        assert (await client.get(url)).status_code == 200
        local.clock.advance(3601)
        assert (await client.get(url)).status_code == 403


async def test_local_urls_live_at_least_their_whole_lifetime(local: Backend) -> None:
    # Made just before a whole second, a URL still works until its full lifetime has passed
    # (15 minutes to upload, an hour to download), and not after.
    data = payload(3000)
    local.clock.now = float(int(local.clock())) + 0.99
    slot = await local.store.create_upload(len(data))
    async with httpx.AsyncClient() as client:
        local.clock.advance(15 * 60 - 0.001)
        assert (await put(client, slot.parts[0].url, data)).status_code == 200
        await local.store.complete_upload(slot.blob_id)
        local.clock.now = float(int(local.clock())) + 0.99
        url = await local.store.presign_download(slot.blob_id)
        local.clock.advance(3600 - 0.001)
        assert (await client.get(url)).status_code == 200
        local.clock.advance(1.02)
        assert (await client.get(url)).status_code == 403


async def test_local_tampered_and_reused_urls_refused(local: Backend) -> None:
    data = payload(3000)
    slot = await local.store.create_upload(len(data))
    url = slot.parts[0].url
    other = await local.store.create_upload(len(data))
    async with httpx.AsyncClient() as client:
        for bad in (
            _tamper(url, len="2999"),
            _tamper(url, off="1"),
            _tamper(url, exp=str(int(local.clock()) + 10**6)),
            _tamper(url, sig="A" * 43),
            _tamper(url, kid="00000000"),
            url.replace(slot.blob_id, other.blob_id),
        ):
            assert (await put(client, bad, data)).status_code == 403, bad
        assert (await client.get(url)).status_code == 403  # a PUT URL does not allow GET
        assert (await put(client, url, data)).status_code == 200
        assert (await put(client, url, data)).status_code == 409  # used once
        await local.store.complete_upload(slot.blob_id)
        assert (await put(client, url, data)).status_code == 409
        down = await local.store.presign_download(slot.blob_id)
        assert (await client.put(down, content=data)).status_code == 403  # GET URL, not PUT
        r = await client.get(down, headers={"range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == data[10:20]
        assert (await client.head(down)).headers["content-length"] == str(len(data))


async def test_local_oversized_body_and_missing_length(local: Backend) -> None:
    slot = await local.store.create_upload(100)
    q = dict(parse_qsl(urlsplit(slot.parts[0].url).query))

    async def body(n: int):  # type: ignore[no-untyped-def]
        yield b"x" * n

    headers = {"content-length": "100"}
    r = await handle_blob_request(
        local.store, BlobRequest("PUT", slot.blob_id, q, headers, body(150))
    )
    assert r.status == 413
    r = await handle_blob_request(local.store, BlobRequest("PUT", slot.blob_id, q, {}, body(100)))
    assert r.status == 411
    r = await handle_blob_request(local.store, BlobRequest("PUT", "../../etc", q, headers, body(1)))
    assert r.status == 404
    assert (await local.store.upload_status(slot.blob_id)).received == 0


async def test_local_key_rotation_keeps_old_urls_valid(local: Backend) -> None:
    blob_id = await upload_all(local, payload(500))
    old = await local.store.presign_download(blob_id)
    local.store.keys.rotate()
    new = await local.store.presign_download(blob_id)
    assert (
        dict(parse_qsl(urlsplit(old).query))["kid"] != dict(parse_qsl(urlsplit(new).query))["kid"]
    )
    async with httpx.AsyncClient() as client:
        assert (await client.get(old)).status_code == 200
        assert (await client.get(new)).status_code == 200
    reopened = LocalBlobStore(local.store.local_settings, clock=local.clock)
    assert reopened.keys.current_kid == local.store.keys.current_kid  # persisted


def test_local_permissions(local: Backend) -> None:
    assert local.root is not None
    asyncio.run(upload_all(local, payload(100)))
    for path in [local.root, *local.root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
