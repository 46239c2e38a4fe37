"""Shared parts of the attachment tests: a real server with its blobs in the local store or in
a moto S3 server (one suite, run twice), clients, and sample media made on the spot."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tests.integration.conftest import ServerFactory, ServerProcess, free_port

from tidings.client import Client
from tidings.client.types import Message, MessageStatus

BUCKET = "tidings-media"
#: small parts so that resumable uploads are quick to test (the local store's minimum is 64 KiB)
PART = 256 * 1024


@dataclass
class MediaServer:
    server: ServerProcess
    backend: str
    s3: Any = None

    def bucket_bytes(self) -> list[bytes]:
        """Every object in the bucket (S3), for the never-in-clear checks."""
        if self.s3 is None:
            return []
        out: list[bytes] = []
        listing = self.s3.list_objects_v2(Bucket=BUCKET)
        for obj in listing.get("Contents", []):
            out.append(self.s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
        return out


@contextlib.contextmanager
def moto_s3() -> Iterator[tuple[str, Any]]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    try:
        yield endpoint, s3
    finally:
        moto.stop()


def media_env(backend: str, endpoint: str = "", part: int = PART) -> dict[str, str]:
    env = {"TIDINGS_MEDIA_PART_SIZE": str(part), "TIDINGS_MEDIA_STORE": backend}
    if backend == "s3":
        env.update(
            TIDINGS_MEDIA_S3_BUCKET=BUCKET,
            TIDINGS_MEDIA_S3_ENDPOINT=endpoint,
            TIDINGS_MEDIA_S3_ACCESS_KEY_ID="test",
            TIDINGS_MEDIA_S3_SECRET_ACCESS_KEY="test",
            TIDINGS_MEDIA_PART_SIZE=str(5 * 1024 * 1024),
        )
    return env


@contextlib.contextmanager
def media_server(
    server_factory: ServerFactory, backend: str, env: dict[str, str] | None = None
) -> Iterator[MediaServer]:
    if backend == "local":
        yield MediaServer(server_factory(env={**media_env("local"), **(env or {})}), "local")
        return
    with moto_s3() as (endpoint, s3):
        server = server_factory(env={**media_env("s3", endpoint), **(env or {})})
        yield MediaServer(server, "s3", s3)


@contextlib.asynccontextmanager
async def clients(url: str, root: Path, *names: str) -> AsyncIterator[list[Client]]:
    made = [await Client.create_account(root / n, url, n) for n in names]
    try:
        for c in made:
            await c.start()
        for c in made:
            await c.wait_synced(timeout=20)
        yield made
    finally:
        for c in made:
            await c.close()


async def wait_for(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.05)


async def arrived(
    client: Client, conv_id: str, message_id: uuid.UUID, within: float = 30
) -> Message:
    async def look() -> Message | None:
        return await client.message(message_id)

    return await wait_for(look, within, f"message {message_id} at {client.account.username}")


async def sent(client: Client, message_id: uuid.UUID, within: float = 60) -> Message:
    async def look() -> Message | None:
        m = await client.message(message_id)
        if m is not None and m.status is MessageStatus.FAILED:
            raise AssertionError(f"message failed: {m.fail_reason}")
        return m if m is not None and m.status is not MessageStatus.SENDING else None

    return await wait_for(look, within, f"message {message_id} sent")


def exif_photo(path: Path, marker: str, size: tuple[int, int] = (4000, 3000)) -> Path:
    """A landscape photo stored sideways with EXIF orientation 6 (rotate 90° clockwise to
    show), GPS tags, and ``marker`` in its EXIF description and its pixels' comment."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
         np.full((height, width), 128, np.float32)], axis=-1,
    ).astype(np.uint8)  # fmt: skip
    image = Image.fromarray(pixels, "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW
    exif[0x010E] = marker  # ImageDescription
    exif[0x010F] = "MarkerCam"
    gps = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    exif[0x8825] = gps
    image.save(path, "JPEG", quality=90, exif=exif.tobytes(), comment=marker.encode())
    return path


def tone_wav(path: Path, seconds: float = 6.0, rate: int = 48_000) -> Path:
    """A voice-like WAV whose loudness rises then falls (quiet, loud, quiet)."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    envelope = np.sin(np.pi * t / seconds) ** 2
    signal = (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t)) * envelope
    pcm = (signal / 1.5 * 30000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def document(path: Path, marker: str, size: int = 200_000) -> Path:
    head = f"%PDF-1.4\n% {marker}\n".encode()
    path.write_bytes(head + bytes((i * 31) % 251 for i in range(size - len(head))))
    return path


def grep_tree(root: Path, needles: list[bytes]) -> list[str]:
    """Files under ``root`` that contain any of ``needles``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path))
    return found
