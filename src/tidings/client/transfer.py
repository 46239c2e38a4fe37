"""Moving attachment ciphertext to and from presigned URLs, with progress.

The URLs come from the server's ``/v1/media`` routes (:mod:`tidings.protocol.media`) and point
at the server's blob endpoint or straight at an S3 bucket. These requests carry **no device
token** (the URL's signature is the authorisation, and a bucket must never see the token): they
go through their own HTTP client, not :class:`~tidings.client.rest.Rest`. A relative URL is
resolved against the server URL.

Failures: :class:`UrlRefused` for an answer that a fresh URL may fix (expired or already used:
403, 404, 409), :class:`~tidings.client.errors.NotConnected` subclasses for the network
(:func:`~tidings.client.network.diagnose`), ``ClientError("upload_failed")`` for the rest.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urljoin

import httpx

from . import tls
from .errors import ClientError
from .network import diagnose
from .rest import KEEPALIVE_EXPIRY

#: bytes per read and per progress report
CHUNK = 256 * 1024
#: seconds without progress before a transfer counts as stalled
STALL_TIMEOUT = 60.0

#: called with (bytes done, bytes in all)
Progress = Callable[[int, int], None]


class UrlRefused(ClientError):
    """The presigned URL was refused (expired, used, unknown): ask the server for a fresh one."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__("url_refused", f"HTTP {status}: {message}")
        self.status = status


class Transfers:
    """One HTTP client for blob URLs, relative to ``server_url``. ``verify`` is the client's
    TLS context (:func:`tidings.client.tls.ssl_context`: the profile's CA file or certifi's
    CAs), so a bucket or CDN on https is checked exactly like the server itself."""

    def __init__(self, server_url: str, verify: ssl.SSLContext | None = None) -> None:
        self.base = server_url.rstrip("/") + "/"
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(STALL_TIMEOUT, connect=10.0),
            follow_redirects=False,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
            verify=verify if verify is not None else tls.ssl_context(),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def absolute(self, url: str) -> str:
        return urljoin(self.base, url)

    async def put_part(
        self,
        url: str,
        path: Path,
        offset: int,
        length: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """PUT ``length`` bytes of the file at ``path`` from ``offset``; ``progress`` gets the
        byte count of each chunk once it was handed to the socket."""

        async def body() -> AsyncIterator[bytes]:
            with path.open("rb") as f:
                f.seek(offset)
                left = length
                while left:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        raise ClientError("upload_failed", "the encrypted file got shorter")
                    left -= len(chunk)
                    yield chunk
                    if progress is not None:
                        progress(len(chunk))

        headers = {"Content-Length": str(length), "Content-Type": "application/octet-stream"}
        target = self.absolute(url)
        try:
            response = await self.http.put(target, content=body(), headers=headers)
        except httpx.HTTPError as exc:
            raise await diagnose(exc, self.base) from exc
        _check(response)

    async def get(self, url: str, dest: Path, size: int, progress: Progress | None = None) -> None:
        """GET the blob at ``url`` into ``dest`` (created 0600, truncated)."""
        target = self.absolute(url)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        done = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async with self.http.stream("GET", target) as response:
                    if response.status_code >= 300:
                        await response.aread()
                        _check(response)
                    async for chunk in response.aiter_bytes(CHUNK):
                        done += len(chunk)
                        if done > size:
                            raise ClientError("download_failed", "the blob is longer than stated")
                        out.write(chunk)
                        if progress is not None:
                            progress(done, size)
                out.flush()
                os.fsync(out.fileno())
        except httpx.HTTPError as exc:
            raise await diagnose(exc, self.base) from exc
        if done != size:
            raise ClientError("download_failed", f"got {done} of {size} bytes")


def _check(response: httpx.Response) -> None:
    if response.status_code < 300:
        return
    text = response.text[:200]
    if response.status_code in (403, 404, 409):
        raise UrlRefused(response.status_code, text)
    code = "upload_failed" if response.request.method == "PUT" else "download_failed"
    raise ClientError(code, f"HTTP {response.status_code}: {text}")
