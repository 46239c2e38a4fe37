"""Sending attachments: prepare, encrypt, upload (resumable), then send the pointer.

Order of events for ``Client.send_file``/``send_voice``:

1. The message is written to the local store as ``sending`` **first**, with its attachment row
   (the path of the file being sent, state ``preparing``), and shown at once.
2. The file is prepared on the device (:mod:`tidings.client.media`: photos re-encoded without
   metadata, voice transcoded to Ogg Opus, videos probed for a thumbnail) and encrypted with a
   fresh key (:mod:`tidings.crypto.attachment`) into a temporary file in the profile (0600);
   key, digest and descriptions go into the row (state ``uploading``). The plaintext of an own
   photo or voice note goes into the media cache, so it shows without a download.
3. An upload slot is asked for; its blob id is stored before the first byte goes up. The parts
   are PUT to their presigned URLs with progress events. After a cut, a failure or a restart of
   the app the server is asked which parts arrived and only the others are sent again.
4. The upload is completed (state ``uploaded``) and only then does the message with the pointer
   inside go to the engine, end-to-end encrypted like a text, under the same message id.

A permanent refusal (too large, quota, a file that is not what it claims) marks the message
``failed`` with the reason; ``Client.retry`` starts again. Transient failures (network, 5xx)
retry with jittered exponential backoff, capped at a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

from tidings.crypto.attachment import encrypt_stream
from tidings.protocol import routes
from tidings.protocol.attachment import ATTACHMENT_KINDS, AttachmentKind, AttachmentPointer
from tidings.protocol.content import Media
from tidings.protocol.media import BlobCompleted, NewUpload, UploadSlot, UploadStatus

from . import attachments
from .attachments import Row
from .errors import ClientError, NotConnected, ServerRefused
from .media.cache import MediaCache
from .media.errors import MediaError
from .rest import Rest
from .store import LocalStore
from .transfer import Transfers, UrlRefused
from .types import TransferProgress

log = logging.getLogger("tidings.client")

#: seconds before the first retry of a failed upload (doubled each time, capped)
RETRY_BASE = 1.0
RETRY_CAP = 60.0
#: own attachments up to this size are copied into the media cache (shown without download)
OWN_CACHE_LIMIT = 32 * 1024 * 1024
#: codes of a refused upload that retrying cannot fix
PERMANENT = frozenset({"payload_too_large", "quota_exceeded", "bad_frame", "forbidden"})

#: hands content to the engine: (conversation, message id, content)
SendHook = Callable[[str, uuid.UUID, Media], Awaitable[None]]
#: store rows changed: (message ids, whether they are new)
ChangedHook = Callable[[list[uuid.UUID], bool], None]
EventHook = Callable[[TransferProgress], None]


class UploadFailed(ClientError):
    """An upload was refused for good; the message is ``failed`` with this reason."""


class Uploader:
    """Runs every pending upload of a profile (module docstring)."""

    def __init__(
        self,
        store: LocalStore,
        rest: Rest,
        transfers: Transfers,
        cache: MediaCache,
        workdir: Path,
        *,
        send: SendHook,
        changed: ChangedHook,
        progress: EventHook,
    ) -> None:
        self._store = store
        self._transaction = store.transaction
        self._rest = rest
        self._transfers = transfers
        self._cache = cache
        self._dir = workdir
        self._send = send
        self._changed = changed
        self._progress = progress
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def db(self) -> sqlite3.Connection:
        return self._store.db

    def start(
        self, message_id: uuid.UUID, conv_id: str, caption: str, reply: uuid.UUID | None
    ) -> None:
        """Upload (or resume) the attachments of own message ``message_id`` in the background."""
        running = self._tasks.get(message_id)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(
            self._run(message_id, conv_id, caption, reply), name=f"upload-{message_id}"
        )
        self._tasks[message_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(message_id, None))

    async def wait(self, message_id: uuid.UUID) -> None:
        """Until the upload of ``message_id`` ended (sent to the engine, or failed)."""
        task = self._tasks.get(message_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ the work

    async def _run(
        self, message_id: uuid.UUID, conv_id: str, caption: str, reply: uuid.UUID | None
    ) -> None:
        attempt = 0
        while True:
            try:
                pointers: list[AttachmentPointer] = []
                for row in attachments.rows(self.db, message_id):
                    pointers.append((await self._upload(row)).pointer())
                await self._send(
                    conv_id, message_id, Media(body=caption, attachments=pointers, reply_to=reply)
                )
                return
            except (MediaError, UploadFailed) as exc:
                reason = exc.code if isinstance(exc, UploadFailed) else "unsupported_media"
                self._fail(message_id, reason, str(exc))
                return
            except ServerRefused as exc:
                if exc.code in PERMANENT or exc.status == 413:
                    self._fail(message_id, exc.code, exc.message)
                    return
                log.info("upload of %s refused (%s); retrying", message_id, exc.code)
            except (NotConnected, ClientError) as exc:
                log.info("upload of %s failed (%s); retrying", message_id, exc.code)
            attempt += 1
            delay = min(RETRY_CAP, RETRY_BASE * 2 ** min(attempt, 10))
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    def _fail(self, message_id: uuid.UUID, reason: str, detail: str) -> None:
        log.warning("upload of %s failed for good: %s (%s)", message_id, reason, detail)
        with self._transaction():
            self.db.execute(
                "UPDATE messages SET status = 'failed', fail_reason = ?"
                " WHERE id = ? AND status = 'sending'",
                (reason, message_id.hex),
            )
            self.db.execute(
                "UPDATE attachments SET state = 'failed', fail_reason = ?"
                " WHERE message_id = ? AND state != 'uploaded'",
                (reason, message_id.hex),
            )
        self._changed([message_id], False)

    async def _upload(self, row: Row) -> Row:
        if row.state == "uploaded":
            return row
        if row.cipher_path is None or not _exists(row.cipher_path):
            row = await self._prepare(row)
        cipher_path, cipher_size = row.cipher_path, row.cipher_size
        assert cipher_path is not None and cipher_size is not None
        parts = await self._parts(row)
        row = attachments.row(self.db, row.id) or row
        assert row.blob_id is not None
        total = row.cipher_size or 0
        done = total - sum(p.length for p in parts.parts)
        for part in parts.parts:
            done = await self._put(row, part.url, part.offset, part.length, done, total)
        try:
            await self._rest.call(routes.COMPLETE_UPLOAD, BlobCompleted, blob_id=row.blob_id)
        except ServerRefused as exc:
            if exc.code == "conflict":  # parts missing after all: ask again
                raise ClientError("upload_incomplete", exc.message) from None
            raise
        with self._transaction():
            attachments.update(self.db, row.id, state="uploaded", cipher_path=None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(cipher_path)
        self._changed([row.message_id], False)
        return attachments.row(self.db, row.id) or row

    async def _prepare(self, row: Row) -> Row:
        if row.source_path is None or not _exists(row.source_path):
            raise UploadFailed("file_missing", "the file to send is no longer there")
        from .prepare import prepare  # Pillow and PyAV are imported on use

        prepared = await asyncio.to_thread(prepare, Path(row.source_path), row.kind)
        cipher = self._dir / f"{row.id}.enc"
        source = prepared.open()
        try:
            with _private_open(cipher) as out:
                encrypted = await asyncio.to_thread(encrypt_stream, source, out)
        finally:
            source.close()
        local: str | None = None
        if prepared.size <= min(OWN_CACHE_LIMIT, self._cache.max_bytes // 4):
            with prepared.open() as plain:
                local = str(await asyncio.to_thread(self._cache.put, row.id, plain))
        with self._transaction():
            attachments.update(
                self.db,
                row.id,
                mime=prepared.content_type,
                size=encrypted.size,
                key=encrypted.key,
                digest=encrypted.digest,
                width=prepared.width,
                height=prepared.height,
                blurhash=prepared.blurhash,
                duration_ms=prepared.duration_ms,
                waveform=prepared.waveform,
                cipher_path=str(cipher),
                cipher_size=encrypted.ciphertext_size,
                local_path=local,
                state="uploading",
                blob_id=None,
            )
        self._changed([row.message_id], False)
        found = attachments.row(self.db, row.id)
        assert found is not None
        return found

    async def _parts(self, row: Row) -> UploadSlot:
        assert row.cipher_size is not None
        if row.blob_id is not None:
            try:
                status = await self._rest.call(
                    routes.UPLOAD_STATUS, UploadStatus, blob_id=row.blob_id
                )
            except ServerRefused as exc:
                if exc.status != 404:
                    raise
                status = None  # collected, or never recorded: a new slot
            if status is not None and status.complete:
                return UploadSlot(row.blob_id, row.cipher_size, 0, False, [])
            if status is not None:
                return await self._rest.call(routes.RESUME_UPLOAD, UploadSlot, blob_id=row.blob_id)
        body = NewUpload(size=row.cipher_size, kind=_kind(row.kind))
        slot = await self._rest.call(routes.NEW_UPLOAD, UploadSlot, body)
        with self._transaction():
            attachments.update(self.db, row.id, blob_id=slot.blob_id)
        return slot

    async def _put(
        self, row: Row, url: str, offset: int, length: int, done: int, total: int
    ) -> int:
        assert row.cipher_path is not None
        sent = done
        last = [0]

        def moved(count: int) -> None:
            nonlocal sent
            sent += count
            if sent - last[0] >= total // 50 or sent == total:
                last[0] = sent
                self._progress(TransferProgress(row.message_id, row.id, "up", sent, total))

        try:
            await self._transfers.put_part(url, Path(row.cipher_path), offset, length, moved)
        except UrlRefused as exc:  # expired, or it arrived after all: ask which parts are in
            raise ClientError("url_refused", exc.message) from None
        return done + length


def _private_open(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")


def _kind(value: str) -> AttachmentKind:
    for kind in ATTACHMENT_KINDS:
        if kind == value:
            return kind
    return "file"


def _exists(path: str) -> bool:
    return os.path.exists(path)
