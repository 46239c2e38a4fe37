"""Blobs as files under the server's data directory, behind HMAC-presigned URLs.

Guarantees: the store directory is 0700 and every file in it 0600 (blobs, their metadata, the
signing keys); blob ids are checked against a strict pattern before any path is built, so a URL
can never name a file outside the store. Bytes are written exactly as received — the server
holds ciphertext only and never transforms it. A part counts as received only once all its bytes
arrived and were fsynced; a cut PUT leaves that part missing, and the upload resumes from the
first missing part. Signatures, expiry and lengths are checked by :mod:`.handlers` before a single
byte is written or read.

Layout: ``root/data/<ab>/<blob id>`` (the bytes) and ``root/meta/<ab>/<blob id>.json`` (size,
parts, parts received, creation and completion times), ``root/url-keys.json``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .blobstore import (
    BlobInfo,
    BlobNotFoundError,
    BlobStateError,
    ExpiredBlob,
    UploadIncompleteError,
    UploadPart,
    UploadSlot,
    UploadStatus,
    check_blob_id,
    new_blob_id,
    plan_parts,
    received_prefix,
)
from .settings import LocalStoreSettings, MediaSettings
from .signing import KeyRing, SignedParams

__all__ = ["LocalBlobStore"]


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class LocalBlobStore:
    """A :class:`.blobstore.BlobStore` on the local file system."""

    def __init__(
        self, settings: LocalStoreSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._cfg = settings
        self._clock = clock
        self._root = settings.root
        for sub in ("", "data", "meta"):
            _mkdir_private(self._root / sub)
        key_file = settings.key_file or self._root / "url-keys.json"
        self.keys = KeyRing(key_file, max_ttl_s=settings.media.max_url_ttl_s, clock=clock)
        self._busy: set[tuple[str, int]] = set()  # (blob id, part) being written
        self._meta_lock = asyncio.Lock()

    @property
    def settings(self) -> MediaSettings:
        return self._cfg.media

    @property
    def local_settings(self) -> LocalStoreSettings:
        return self._cfg

    def now(self) -> float:
        return self._clock()

    def _expiry(self, ttl_s: int) -> int:
        """When a URL made now with a lifetime of ``ttl_s`` expires, in whole seconds, rounded
        up: a URL lives at least its lifetime (rounded down, one made at x.99 s would have
        lived 0.01 s less than a second short)."""
        return math.ceil(self._clock()) + ttl_s

    # -- paths and metadata -------------------------------------------------------------

    def data_path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self._root / "data" / blob_id[:2] / blob_id

    def _meta_path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self._root / "meta" / blob_id[:2] / f"{blob_id}.json"

    def read_meta(self, blob_id: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self._meta_path(blob_id).read_text()))
        except FileNotFoundError:
            raise BlobNotFoundError(blob_id) from None

    def _write_meta(self, blob_id: str, meta: dict[str, Any]) -> None:
        path = self._meta_path(blob_id)
        _mkdir_private(path.parent)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @staticmethod
    def parts_of(meta: dict[str, Any]) -> tuple[tuple[int, int], ...]:
        return tuple((int(o), int(n)) for o, n in meta["parts"])

    # -- URLs ---------------------------------------------------------------------------

    def presign(self, params: SignedParams) -> str:
        kid, sig = self.keys.sign(params)
        query = {
            "exp": params.expires,
            "len": params.length,
            "off": params.offset,
            "kid": kid,
            "sig": sig,
        }
        return f"{self._cfg.base_url.rstrip('/')}/{params.blob_id}?{urlencode(query)}"

    def _slot(self, blob_id: str, meta: dict[str, Any]) -> UploadSlot:
        expires = self._expiry(self.settings.upload_url_ttl_s)
        parts = self.parts_of(meta)
        done = set(meta["done"])
        urls = tuple(
            UploadPart(n, off, ln, self.presign(SignedParams("PUT", blob_id, ln, expires, off)))
            for n, (off, ln) in enumerate(parts, 1)
            if n not in done
        )
        return UploadSlot(blob_id, int(meta["size"]), expires, len(parts) > 1, urls)

    # -- the BlobStore protocol -----------------------------------------------------------

    async def create_upload(self, size: int) -> UploadSlot:
        parts = plan_parts(size, self.settings)
        blob_id = new_blob_id()
        meta = {
            "size": size,
            "parts": [list(p) for p in parts],
            "done": [],
            "created_at": self._clock(),
            "completed_at": None,
        }
        path = self.data_path(blob_id)
        _mkdir_private(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        self._write_meta(blob_id, meta)
        return self._slot(blob_id, meta)

    async def presign_parts(self, blob_id: str) -> UploadSlot:
        meta = self.read_meta(blob_id)
        if meta["completed_at"] is not None:
            raise BlobStateError("upload already completed")
        return self._slot(blob_id, meta)

    async def upload_status(self, blob_id: str) -> UploadStatus:
        meta = self.read_meta(blob_id)
        done = frozenset(int(n) for n in meta["done"])
        parts = self.parts_of(meta)
        return UploadStatus(
            blob_id=blob_id,
            size=int(meta["size"]),
            received=received_prefix(parts, done),
            completed_parts=done,
            complete=meta["completed_at"] is not None,
        )

    async def complete_upload(self, blob_id: str) -> BlobInfo:
        async with self._meta_lock:
            meta = self.read_meta(blob_id)
            if meta["completed_at"] is None:
                parts = self.parts_of(meta)
                missing = set(range(1, len(parts) + 1)) - set(meta["done"])
                if missing:
                    raise UploadIncompleteError(f"parts missing: {sorted(missing)}")
                if self.data_path(blob_id).stat().st_size != int(meta["size"]):
                    raise UploadIncompleteError("stored length differs from the slot's size")
                meta["completed_at"] = self._clock()
                self._write_meta(blob_id, meta)
        return self._info(blob_id, meta)

    @staticmethod
    def _info(blob_id: str, meta: dict[str, Any]) -> BlobInfo:
        return BlobInfo(blob_id, int(meta["size"]), meta["created_at"], meta["completed_at"])

    async def presign_download(self, blob_id: str) -> str:
        meta = self.read_meta(blob_id)
        if meta["completed_at"] is None:
            raise BlobStateError("blob not uploaded yet")
        expires = self._expiry(self.settings.download_url_ttl_s)
        return self.presign(SignedParams("GET", blob_id, int(meta["size"]), expires, 0))

    async def info(self, blob_id: str) -> BlobInfo | None:
        try:
            return self._info(blob_id, self.read_meta(blob_id))
        except BlobNotFoundError:
            return None

    async def delete(self, blob_id: str) -> bool:
        check_blob_id(blob_id)
        found = False
        for path in (self._meta_path(blob_id), self.data_path(blob_id)):
            try:
                path.unlink()
                found = True
            except FileNotFoundError:
                pass
        return found

    async def list_expired(self, now: float) -> list[ExpiredBlob]:
        cfg = self.settings
        expired: list[ExpiredBlob] = []
        for meta_file in (self._root / "meta").glob("*/*.json"):
            blob_id = meta_file.name.removesuffix(".json")
            try:
                meta = self.read_meta(blob_id)
            except (BlobNotFoundError, ValueError):
                continue
            size = int(meta["size"])
            if meta["completed_at"] is None:
                if now - meta["created_at"] >= cfg.abandoned_upload_ttl_s:
                    expired.append(ExpiredBlob(blob_id, size, "abandoned"))
            elif now - meta["completed_at"] >= cfg.retention_s:
                expired.append(ExpiredBlob(blob_id, size, "retention"))
        return expired

    # -- used by the HTTP handlers ----------------------------------------------------------

    def claim_part(self, blob_id: str, number: int) -> bool:
        """Mark a part as being written; ``False`` if another request is writing it."""
        if (blob_id, number) in self._busy:
            return False
        self._busy.add((blob_id, number))
        return True

    def release_part(self, blob_id: str, number: int) -> None:
        self._busy.discard((blob_id, number))

    async def mark_part_done(self, blob_id: str, number: int) -> None:
        async with self._meta_lock:
            meta = self.read_meta(blob_id)
            if number not in meta["done"]:
                meta["done"] = sorted([*meta["done"], number])
                self._write_meta(blob_id, meta)
