"""Media benchmark: preparing a 12 MP photo on the device (upright ≤ 1280 px JPEG q80 without
metadata, plus its BlurHash), encrypting and uploading / downloading and decrypting 50 MiB
through a real server with its blobs in the local store and in an S3 bucket (moto's server
standing in), and encoding 60 s of voice as Ogg Opus.

The photo is made to look like a camera's: smooth gradients with sensor-like noise, 4032x3024,
JPEG q92 (noise keeps it from compressing unrealistically well).

``python -m bench.media [--quick]`` prints JSON; ``make bench`` runs it as the ``media`` part.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.loadgen import LOOPBACK, ServerProcess, free_port
from tidings.client import Client
from tidings.client.types import MessageStatus

Json = dict[str, Any]
MiB = 1024 * 1024
BUCKET = "tidings-bench"


def camera_photo(path: Path, size: tuple[int, int] = (4032, 3024), seed: int = 7) -> Path:
    """A 12 MP JPEG (q92) of gradients and per-pixel noise, like a phone camera's."""
    width, height = size
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    red = 60 + 150 * x + 30 * np.sin(6 * y)
    green = 40 + 120 * y + 40 * np.cos(4 * x + 3 * y)
    blue = 90 + 80 * (1 - x) * y + 30 * np.sin(9 * x * y)
    pixels = np.stack([red, green, blue], axis=-1)
    pixels += rng.normal(0.0, 9.0, size=pixels.shape).astype(np.float32)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path, "JPEG", quality=92)
    return path


def speech_like_wav(path: Path, seconds: float = 60.0, rate: int = 48_000) -> Path:
    """Mono 16-bit audio with a voice-like pitch and loudness that come and go."""
    n = int(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t) ** 2
    signal = (np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)) * envelope
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((signal / 1.6 * 30000).astype("<i2").tobytes())
    return path


def measure_photo(root: Path, runs: int) -> Json:
    from tidings.client.media.image import prepare_image

    photo = camera_photo(root / "camera.jpg")
    times: list[float] = []
    prepared = None
    prepare_image(photo)  # warm up: imports, Pillow's decoder tables
    for _ in range(runs):
        started = time.perf_counter()
        prepared = prepare_image(photo)
        times.append((time.perf_counter() - started) * 1000)
    assert prepared is not None
    size_in = photo.stat().st_size
    return {
        "photo_in": "4032x3024 JPEG q92",
        "photo_in_bytes": size_in,
        "photo_out": f"{prepared.width}x{prepared.height} JPEG",
        "photo_out_bytes": len(prepared.data),
        "photo_out_ratio_pct": round(100 * len(prepared.data) / size_in, 2),
        "photo_prepare_ms_p50": round(statistics.median(times), 1),
        "photo_prepare_ms_max": round(max(times), 1),
        "photo_runs": runs,
        "blurhash": prepared.blurhash,
    }


def measure_voice(root: Path) -> Json:
    from tidings.client.media.voice import transcode_voice

    wav = speech_like_wav(root / "voice.wav")
    started = time.perf_counter()
    note = transcode_voice(wav)
    seconds = time.perf_counter() - started
    return {
        "voice_60s_encode_s": round(seconds, 3),
        "voice_60s_bytes": len(note.data),
        "voice_kbps": round(len(note.data) * 8 / (note.duration_ms / 1000) / 1000, 1),
    }


@contextlib.contextmanager
def _server(root: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, TIDINGS_LOG_LEVEL="warning", **env)
    full_env.setdefault("TIDINGS_ACCOUNTS_PER_MINUTE", "10000000")
    argv = [sys.executable, "-m", "tidings.server", "--host", LOOPBACK, "--port", str(port)]
    argv += ["--data", str(data)]
    server = ServerProcess("tidings", argv, data / "server.log", env=full_env).start()
    url = f"http://{LOOPBACK}:{port}"
    try:
        server.wait_http(f"{url}/v1/health")
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def _moto() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    port = free_port()
    moto = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    moto.start()
    endpoint = f"http://{LOOPBACK}:{port}"
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="bench", aws_secret_access_key="bench",
    )  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        moto.stop()


async def _transfer(url: str, root: Path, size: int) -> Json:
    """alice sends ``size`` random bytes as a file, bob downloads them: MiB/s each way."""
    blob = root / "blob.bin"
    with blob.open("wb") as out:
        for _ in range(size // MiB):
            out.write(os.urandom(MiB))
    alice = await Client.create_account(root / "alice", url, "alice")
    bob = await Client.create_account(root / "bob", url, "bob")
    try:
        for c in (alice, bob):
            await c.start()
            await c.wait_synced(timeout=30)
        conv = await alice.open_direct("bob")
        started = time.perf_counter()
        message = await alice.send_file(conv.id, blob)
        await alice.wait_upload(message.id)
        up = time.perf_counter() - started
        sent = await alice.message(message.id)
        assert sent is not None and sent.status is not MessageStatus.FAILED, sent
        deadline = time.monotonic() + 60
        while await bob.message(message.id) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the message did not arrive")
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        path = await bob.download(message.id)
        down = time.perf_counter() - started
        assert path.stat().st_size == size
    finally:
        await alice.close()
        await bob.close()
    return {
        "encrypt_upload_mib_s": round(size / MiB / up, 1),
        "download_decrypt_mib_s": round(size / MiB / down, 1),
    }


def measure_transfers(root: Path, size: int) -> Json:
    out: Json = {"transfer_mib": size // MiB}
    with _server(root / "local", {"TIDINGS_MEDIA_STORE": "local"}) as url:
        out["local"] = asyncio.run(_transfer(url, root / "local", size))
    try:
        with _moto() as endpoint:
            env = {
                "TIDINGS_MEDIA_STORE": "s3",
                "TIDINGS_MEDIA_S3_BUCKET": BUCKET,
                "TIDINGS_MEDIA_S3_ENDPOINT": endpoint,
                "TIDINGS_MEDIA_S3_ACCESS_KEY_ID": "bench",
                "TIDINGS_MEDIA_S3_SECRET_ACCESS_KEY": "bench",
            }
            with _server(root / "s3", env) as url:
                out["s3_moto"] = asyncio.run(_transfer(url, root / "s3", size))
    except ImportError as exc:  # moto is a test dependency
        out["s3_moto"] = {"skipped": str(exc)}
    return out


def measure(quick: bool = False, workdir: Path | None = None) -> Json:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        result: Json = {}
        result.update(measure_photo(root, 3 if quick else 10))
        result.update(measure_voice(root))
        result.update(measure_transfers(root, (8 if quick else 50) * MiB))
    result["note"] = (
        "Photo: prepare_image on one core (decode with JPEG draft scaling, turn upright, "
        "resize, encode q80, BlurHash 4x3). Transfers: the client's encrypt-then-upload and "
        "download-then-verify-and-decrypt through a server on loopback; moto's S3 server is "
        "a Python stand-in, slower than a real bucket."
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(measure(args.quick), indent=2))


if __name__ == "__main__":
    main()
