"""Blobs in an S3-compatible bucket, through boto3, behind SigV4-presigned URLs.

Guarantees: the server holds only ciphertext and never proxies blob bytes — clients PUT and GET
directly against the bucket with presigned URLs (single PUT up to the resumable threshold,
multipart with one presigned URL per part above it). A blob becomes downloadable only after
:meth:`S3BlobStore.complete_upload` checked every part's size (multipart), and the object's exact
length with ``HEAD``; an object of the wrong length is deleted and the slot stays open for a new
attempt. No bucket lifecycle rules are needed: each blob has a small metadata object under
``meta/`` (size, parts, times, multipart upload id) from which :mod:`.gc` finds what expired.

boto3 is synchronous; every network call runs in a worker thread (:func:`asyncio.to_thread`).
Presigning is local computation. The bucket must exist.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .blobstore import (
    BlobInfo,
    BlobNotFoundError,
    BlobStateError,
    ExpiredBlob,
    SizeMismatchError,
    UploadIncompleteError,
    UploadPart,
    UploadSlot,
    UploadStatus,
    check_blob_id,
    new_blob_id,
    plan_parts,
    received_prefix,
)
from .settings import MediaSettings, S3Settings

__all__ = ["S3BlobStore"]

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND


class S3BlobStore:
    """A :class:`.blobstore.BlobStore` on S3 or any S3-compatible service."""

    def __init__(
        self, settings: S3Settings, *, client: Any = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._cfg = settings
        self._clock = clock
        self._bucket = settings.bucket
        self._s3: Any = client or boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if settings.path_style else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )

    @property
    def settings(self) -> MediaSettings:
        return self._cfg.media

    def _key(self, blob_id: str) -> str:
        return f"{self._cfg.prefix}blobs/{check_blob_id(blob_id)}"

    def _meta_key(self, blob_id: str) -> str:
        return f"{self._cfg.prefix}meta/{check_blob_id(blob_id)}.json"

    async def _call(self, name: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self._s3, name), Bucket=self._bucket, **kwargs)

    async def _read_meta(self, blob_id: str) -> dict[str, Any]:
        try:
            obj = await self._call("get_object", Key=self._meta_key(blob_id))
        except ClientError as exc:
            if _missing(exc):
                raise BlobNotFoundError(blob_id) from None
            raise
        body = await asyncio.to_thread(obj["Body"].read)
        return dict(json.loads(body))

    async def _write_meta(self, blob_id: str, meta: dict[str, Any]) -> None:
        await self._call(
            "put_object",
            Key=self._meta_key(blob_id),
            Body=json.dumps(meta).encode(),
            ContentType="application/json",
        )

    def _presign(self, op: str, expires_in: int, **params: Any) -> str:
        return str(
            self._s3.generate_presigned_url(
                op, Params={"Bucket": self._bucket, **params}, ExpiresIn=expires_in
            )
        )

    async def _parts_done(self, blob_id: str, meta: dict[str, Any]) -> dict[int, str]:
        """Part number -> ETag of the parts that arrived with their planned length."""
        parts = [tuple(p) for p in meta["parts"]]
        if meta["upload_id"] is None:
            try:
                head = await self._call("head_object", Key=self._key(blob_id))
            except ClientError as exc:
                if _missing(exc):
                    return {}
                raise
            return {1: head["ETag"]} if head["ContentLength"] == meta["size"] else {}
        done: dict[int, str] = {}
        marker = 0
        while True:
            page = await self._call(
                "list_parts",
                Key=self._key(blob_id),
                UploadId=meta["upload_id"],
                PartNumberMarker=marker,
            )
            for part in page.get("Parts", []):
                n = int(part["PartNumber"])
                if 1 <= n <= len(parts) and int(part["Size"]) == parts[n - 1][1]:
                    done[n] = str(part["ETag"])
            if not page.get("IsTruncated"):
                return done
            marker = int(page["NextPartNumberMarker"])

    def _slot(self, blob_id: str, meta: dict[str, Any], done: set[int]) -> UploadSlot:
        ttl = self.settings.upload_url_ttl_s
        expires = int(self._clock()) + ttl
        key = self._key(blob_id)
        urls: list[UploadPart] = []
        for n, (offset, length) in enumerate(meta["parts"], 1):
            if n in done:
                continue
            if meta["upload_id"] is None:
                url = self._presign("put_object", ttl, Key=key, ContentLength=length)
            else:
                url = self._presign(
                    "upload_part",
                    ttl,
                    Key=key,
                    UploadId=meta["upload_id"],
                    PartNumber=n,
                    ContentLength=length,
                )
            urls.append(UploadPart(n, offset, length, url))
        return UploadSlot(blob_id, int(meta["size"]), expires, len(meta["parts"]) > 1, tuple(urls))

    async def create_upload(self, size: int) -> UploadSlot:
        parts = plan_parts(size, self.settings)
        blob_id = new_blob_id()
        upload_id = None
        if len(parts) > 1:
            created = await self._call(
                "create_multipart_upload",
                Key=self._key(blob_id),
                ContentType="application/octet-stream",
            )
            upload_id = created["UploadId"]
        meta = {
            "size": size,
            "parts": [list(p) for p in parts],
            "upload_id": upload_id,
            "created_at": self._clock(),
            "completed_at": None,
        }
        await self._write_meta(blob_id, meta)
        return self._slot(blob_id, meta, set())

    async def presign_parts(self, blob_id: str) -> UploadSlot:
        meta = await self._read_meta(blob_id)
        if meta["completed_at"] is not None:
            raise BlobStateError("upload already completed")
        return self._slot(blob_id, meta, set(await self._parts_done(blob_id, meta)))

    async def upload_status(self, blob_id: str) -> UploadStatus:
        meta = await self._read_meta(blob_id)
        parts = tuple((int(o), int(n)) for o, n in meta["parts"])
        if meta["completed_at"] is not None:
            done = frozenset(range(1, len(parts) + 1))
        else:
            done = frozenset(await self._parts_done(blob_id, meta))
        return UploadStatus(
            blob_id, int(meta["size"]), received_prefix(parts, done), done,
            meta["completed_at"] is not None,
        )  # fmt: skip

    async def complete_upload(self, blob_id: str) -> BlobInfo:
        meta = await self._read_meta(blob_id)
        if meta["completed_at"] is not None:
            return self._info(blob_id, meta)
        key = self._key(blob_id)
        if meta["upload_id"] is not None:
            done = await self._parts_done(blob_id, meta)
            missing = set(range(1, len(meta["parts"]) + 1)) - set(done)
            if missing:
                raise UploadIncompleteError(f"parts missing: {sorted(missing)}")
            await self._call(
                "complete_multipart_upload",
                Key=key,
                UploadId=meta["upload_id"],
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": done[n]} for n in sorted(done)]
                },
            )
        try:
            head = await self._call("head_object", Key=key)
        except ClientError as exc:
            if _missing(exc):
                raise UploadIncompleteError("nothing uploaded yet") from None
            raise
        if int(head["ContentLength"]) != int(meta["size"]):
            await self._call("delete_object", Key=key)
            if meta["upload_id"] is not None:  # the multipart upload is gone: start a new one
                created = await self._call("create_multipart_upload", Key=key)
                meta["upload_id"] = created["UploadId"]
                await self._write_meta(blob_id, meta)
            raise SizeMismatchError(f"stored {head['ContentLength']} bytes, not {meta['size']}")
        meta["completed_at"] = self._clock()
        meta["upload_id"] = None
        await self._write_meta(blob_id, meta)
        return self._info(blob_id, meta)

    @staticmethod
    def _info(blob_id: str, meta: dict[str, Any]) -> BlobInfo:
        return BlobInfo(blob_id, int(meta["size"]), meta["created_at"], meta["completed_at"])

    async def presign_download(self, blob_id: str) -> str:
        meta = await self._read_meta(blob_id)
        if meta["completed_at"] is None:
            raise BlobStateError("blob not uploaded yet")
        return self._presign("get_object", self.settings.download_url_ttl_s, Key=self._key(blob_id))

    async def info(self, blob_id: str) -> BlobInfo | None:
        try:
            return self._info(blob_id, await self._read_meta(blob_id))
        except BlobNotFoundError:
            return None

    async def delete(self, blob_id: str) -> bool:
        try:
            meta: dict[str, Any] | None = await self._read_meta(blob_id)
        except BlobNotFoundError:
            meta = None
        if meta is not None and meta.get("upload_id"):
            try:
                await self._call(
                    "abort_multipart_upload", Key=self._key(blob_id), UploadId=meta["upload_id"]
                )
            except ClientError as exc:
                if not _missing(exc):
                    raise
        await self._call("delete_object", Key=self._key(blob_id))
        await self._call("delete_object", Key=self._meta_key(blob_id))
        return meta is not None

    async def list_expired(self, now: float) -> list[ExpiredBlob]:
        cfg = self.settings
        expired: list[ExpiredBlob] = []
        prefix = f"{self._cfg.prefix}meta/"
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = await self._call("list_objects_v2", Prefix=prefix, **extra)
            for obj in page.get("Contents", []):
                blob_id = obj["Key"][len(prefix) :].removesuffix(".json")
                try:
                    meta = await self._read_meta(blob_id)
                except BlobNotFoundError:
                    continue
                size = int(meta["size"])
                if meta["completed_at"] is None:
                    if now - meta["created_at"] >= cfg.abandoned_upload_ttl_s:
                        expired.append(ExpiredBlob(blob_id, size, "abandoned"))
                elif now - meta["completed_at"] >= cfg.retention_s:
                    expired.append(ExpiredBlob(blob_id, size, "retention"))
            if not page.get("IsTruncated"):
                return expired
            token = page["NextContinuationToken"]
