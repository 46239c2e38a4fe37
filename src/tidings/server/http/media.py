"""Attachment blobs: upload slots, resume, complete, download URLs, delete
(:mod:`tidings.protocol.media`), and the local blob store's raw endpoint.

Every ``/v1/media`` route needs a device token; the status, resume, complete and delete of an
upload are for the account that made it (anybody else: 404). A download URL is given to any
signed-in device for a completed blob whose id it knows: the blob is ciphertext under a key
only the conversation's members have (docs/e2ee.md, "Attachments").

The blob endpoint (:data:`tidings.protocol.routes.BLOB_PATH`) exists when the server keeps the
blobs itself. It is a plain ASGI route, not a REST handler: no device token (the presigned
URL's signature is the authorisation), raw bytes streamed in and out, and no body limit but the
length the URL signed (checked by :func:`tidings.server.media.handlers.handle_blob_request`
while the body streams in).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from litestar import asgi
from litestar.handlers import ASGIRouteHandler, HTTPRouteHandler
from litestar.params import FromPath
from litestar.types import Receive, Scope, Send

from tidings.protocol import ErrorCode, routes
from tidings.protocol.media import (
    BlobCompleted,
    DownloadUrl,
    MediaUsage,
    NewUpload,
    UploadPart,
    UploadSlot,
    UploadStatus,
)
from tidings.server.delivery import Device
from tidings.server.domain import Refused
from tidings.server.http.common import HttpRequest, Injected, decode_body, endpoint, to_json
from tidings.server.media import blobstore
from tidings.server.media.handlers import BlobRequest, BlobResponse
from tidings.server.media.service import MediaRefused, MediaService

#: Serves one request to a presigned URL (the local store's handler, bound to the store).
BlobServer = Callable[[BlobRequest], Awaitable[BlobResponse]]


def _media(media: MediaService | None) -> MediaService:
    if media is None:
        raise Refused(ErrorCode.NOT_FOUND, "this server keeps no attachments")
    return media


def _slot(slot: blobstore.UploadSlot) -> bytes:
    parts = [UploadPart(p.number, p.offset, p.length, p.url) for p in slot.parts]
    return to_json(UploadSlot(slot.blob_id, slot.size, slot.expires_at, slot.resumable, parts))


async def _refusing(work: Awaitable[Any]) -> Any:
    try:
        return await work
    except MediaRefused as exc:
        raise Refused(exc.code, exc.message) from None


@endpoint(routes.NEW_UPLOAD)
async def new_upload(
    request: HttpRequest, caller: Injected[Device], media: Injected[MediaService | None]
) -> bytes:
    body = await decode_body(request, NewUpload)
    service = _media(media)
    slot = await _refusing(service.new_upload(caller.account_id, body.size, body.kind))
    return _slot(slot)


@endpoint(routes.UPLOAD_STATUS)
async def upload_status(
    blob_id: FromPath[str], caller: Injected[Device], media: Injected[MediaService | None]
) -> bytes:
    status = await _refusing(_media(media).status(caller.account_id, blob_id))
    return to_json(
        UploadStatus(
            blob_id=status.blob_id,
            size=status.size,
            received=status.received,
            parts=sorted(status.completed_parts),
            complete=status.complete,
        )
    )


@endpoint(routes.RESUME_UPLOAD)
async def resume_upload(
    blob_id: FromPath[str], caller: Injected[Device], media: Injected[MediaService | None]
) -> bytes:
    return _slot(await _refusing(_media(media).resume(caller.account_id, blob_id)))


@endpoint(routes.COMPLETE_UPLOAD)
async def complete_upload(
    blob_id: FromPath[str], caller: Injected[Device], media: Injected[MediaService | None]
) -> bytes:
    size = await _refusing(_media(media).complete(caller.account_id, blob_id))
    return to_json(BlobCompleted(blob_id=blob_id, size=size))


@endpoint(routes.DOWNLOAD_URL)
async def download_url(
    blob_id: FromPath[str], caller: Injected[Device], media: Injected[MediaService | None]
) -> bytes:
    del caller  # any signed-in device (module docstring)
    url, size, expires = await _refusing(_media(media).download(blob_id))
    return to_json(DownloadUrl(blob_id=blob_id, size=size, url=url, expires_at=expires))


@endpoint(routes.DELETE_BLOB)
async def delete_blob(
    blob_id: FromPath[str], caller: Injected[Device], media: Injected[MediaService | None]
) -> None:
    await _refusing(_media(media).delete(caller.account_id, blob_id))


@endpoint(routes.MEDIA_USAGE)
async def media_usage(caller: Injected[Device], media: Injected[MediaService | None]) -> bytes:
    service = _media(media)
    used = await service.usage(caller.account_id)
    return to_json(MediaUsage(used=used, quota=service.quota_bytes, max_size=service.max_size))


HANDLERS: list[HTTPRouteHandler] = [
    new_upload,
    upload_status,
    resume_upload,
    complete_upload,
    download_url,
    delete_blob,
    media_usage,
]


def blob_endpoint(serve: BlobServer) -> ASGIRouteHandler:
    """The raw blob route at :data:`~tidings.protocol.routes.BLOB_PATH`, answering with
    ``serve`` (module docstring)."""

    async def blobs(scope: Scope, receive: Receive, send: Send) -> None:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if isinstance(chunk, bytes) and chunk:
                    yield chunk
                if not message.get("more_body"):
                    return

        blob_id = scope["path"].strip("/")
        method = str(scope.get("method", "GET"))
        answer = await serve(BlobRequest(method, blob_id, query, headers, body()))
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": raw})
        if method.upper() != "HEAD":
            async for chunk in answer.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # A mount: Litestar's ASGI routes do not take path parameters; the blob id is the rest.
    return asgi(path=routes.BLOB_PATH, name="blobs", is_mount=True, copy_scope=True)(blobs)
