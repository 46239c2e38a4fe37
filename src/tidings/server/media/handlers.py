"""HTTP handling of the local store's presigned URLs, independent of any web framework.

Guarantees, in the order they are checked: the blob id has the strict id shape; the query
carries an expiry, length, offset, key id and signature; the HMAC signature over
``(method, blob id, length, expiry, offset)`` verifies in constant time (403 otherwise); the URL
has not expired (403); the blob exists (404). For a PUT: the upload is still open and that part
not yet received (409 — an upload URL works once); ``Content-Length`` is present (411) and equals
the signed length (400); the body never exceeds it (413, nothing recorded) and a body that ends
early (a cut connection) leaves the part missing. Only then is the part marked received. For a GET
or HEAD: the blob is complete (404 otherwise); a single ``Range`` is honoured (206/416).

A web framework mounts :func:`handle_blob_request` at ``{base_url}/{blob_id}`` for PUT, GET and
HEAD: build a :class:`BlobRequest` from the request (lower-case header names, the raw body
stream), return the :class:`BlobResponse` (status, headers, an async iterator of body bytes).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .blobstore import BLOB_ID_RE, BlobNotFoundError
from .local import LocalBlobStore
from .signing import SignedParams

__all__ = ["BlobRequest", "BlobResponse", "handle_blob_request"]

_RANGE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True, slots=True)
class BlobRequest:
    """One request to a presigned URL."""

    method: str
    blob_id: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: AsyncIterator[bytes] | None = None


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover


@dataclass(frozen=True, slots=True)
class BlobResponse:
    """Status, headers and a body stream to send back."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: AsyncIterator[bytes] = field(default_factory=_empty)


def _error(status: int, reason: str) -> BlobResponse:
    data = reason.encode()

    async def body() -> AsyncIterator[bytes]:
        yield data

    headers = {"content-type": "text/plain; charset=utf-8", "content-length": str(len(data))}
    return BlobResponse(status, headers, body())


def _params(request: BlobRequest) -> tuple[SignedParams, str, str] | None:
    q = request.query
    try:
        params = SignedParams(
            method="GET" if request.method.upper() == "HEAD" else request.method.upper(),
            blob_id=request.blob_id,
            length=int(q["len"]),
            expires=int(q["exp"]),
            offset=int(q["off"]),
        )
        return params, q["kid"], q["sig"]
    except (KeyError, ValueError):
        return None


async def handle_blob_request(store: LocalBlobStore, request: BlobRequest) -> BlobResponse:
    """Serve one PUT (part upload), GET or HEAD (download) to a presigned URL."""
    method = request.method.upper()
    if method not in ("PUT", "GET", "HEAD"):
        return _error(405, "method not allowed")
    if not BLOB_ID_RE.fullmatch(request.blob_id):
        return _error(404, "no such blob")
    parsed = _params(request)
    if parsed is None:
        return _error(403, "missing or malformed signature parameters")
    params, kid, sig = parsed
    if not store.keys.verify(params, kid, sig):
        return _error(403, "signature does not verify")
    if params.expires < store.now():
        return _error(403, "URL expired")
    try:
        meta = store.read_meta(request.blob_id)
    except BlobNotFoundError:
        return _error(404, "no such blob")
    if method == "PUT":
        return await _put(store, request, params, meta)
    if meta["completed_at"] is None or params.length != int(meta["size"]):
        return _error(404, "no such blob")
    return _get(store, request, params.length, head=method == "HEAD")


async def _put(
    store: LocalBlobStore, request: BlobRequest, params: SignedParams, meta: dict[str, Any]
) -> BlobResponse:
    if meta["completed_at"] is not None:
        return _error(409, "upload already completed")
    parts = LocalBlobStore.parts_of(meta)
    number = next((n for n, p in enumerate(parts, 1) if p == (params.offset, params.length)), 0)
    if not number:
        return _error(400, "no such part")
    if number in meta["done"]:
        return _error(409, "part already received")
    declared = request.headers.get("content-length")
    if declared is None:
        return _error(411, "content-length required")
    if not declared.isdigit() or int(declared) != params.length:
        return _error(400, "content-length differs from the presigned length")
    if request.headers.get("transfer-encoding"):
        return _error(400, "chunked transfer encoding not accepted")
    if not store.claim_part(request.blob_id, number):
        return _error(409, "part upload already in progress")
    try:
        written = await _write_part(store, request, params)
        if written is None:
            return _error(413, "body longer than the presigned length")
        if written != params.length:
            return _error(400, "body shorter than the presigned length")
        await store.mark_part_done(request.blob_id, number)
    finally:
        store.release_part(request.blob_id, number)
    return BlobResponse(200, {"content-length": "0", "x-part-number": str(number)})


async def _write_part(
    store: LocalBlobStore, request: BlobRequest, params: SignedParams
) -> int | None:
    """Write the body at the part's offset; the byte count, or ``None`` if it overflowed."""
    path = store.data_path(request.blob_id)
    fd = os.open(path, os.O_WRONLY)
    written = 0
    try:
        if request.body is not None:
            async for chunk in request.body:
                if written + len(chunk) > params.length:
                    return None
                os.pwrite(fd, chunk, params.offset + written)
                written += len(chunk)
        if written == params.length:
            await asyncio.to_thread(os.fsync, fd)
        return written
    finally:
        os.close(fd)


def _get(store: LocalBlobStore, request: BlobRequest, size: int, *, head: bool) -> BlobResponse:
    start, end = 0, size - 1
    status = 200
    headers = {
        "content-type": "application/octet-stream",
        "accept-ranges": "bytes",
        "cache-control": "private, no-store",
    }
    wanted = request.headers.get("range")
    if wanted:
        match = _RANGE.match(wanted.strip())
        if not match or match.groups() == ("", ""):
            return _error(416, "unsupported range")
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        else:
            start = max(0, size - int(last))
        if start > end or start >= size:
            headers = {"content-range": f"bytes */{size}"}
            return BlobResponse(416, {**headers, "content-length": "0"})
        status = 206
        headers["content-range"] = f"bytes {start}-{end}/{size}"
    headers["content-length"] = str(end - start + 1)
    if head:
        return BlobResponse(status, headers)
    path = store.data_path(request.blob_id)
    chunk_size = store.local_settings.io_chunk_size

    async def body() -> AsyncIterator[bytes]:
        fd = os.open(path, os.O_RDONLY)
        try:
            position, stop = start, end + 1
            while position < stop:
                chunk = os.pread(fd, min(chunk_size, stop - position), position)
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    return BlobResponse(status, headers, body())
