"""Attachments for :class:`~tidings.client.api.Client`: sending files and voice notes, resuming
uploads after a restart, downloading on demand and automatically.

Sending is :mod:`.uploads`. Downloading: the pointer stored with the message names the blob;
the server hands out a presigned URL for it, the ciphertext goes to a temporary file in the
profile (0600), then :func:`tidings.crypto.attachment.decrypt_stream` checks the digest and the
MAC **before** any plaintext is written; only a verified plaintext is moved into the bounded
media cache (:class:`~tidings.client.media.cache.MediaCache`, in the profile). A blob that
fails the check raises :class:`AttachmentTampered`; nothing of it is kept or shown.

Images from others up to ``auto_download_bytes`` are downloaded as soon as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tidings.crypto.attachment import decrypt_stream
from tidings.crypto.errors import InvalidKeyError, InvalidMacError, InvalidMessageError
from tidings.protocol import routes
from tidings.protocol.content import Media
from tidings.protocol.media import DownloadUrl

from . import attachments
from .errors import ClientError
from .media.cache import MediaCache
from .media.files import detect_file, sanitize_file_name
from .rest import Rest
from .store import UNSENT_ORD, LocalStore
from .transfer import Progress, Transfers
from .types import Message, TransferProgress
from .uploads import ChangedHook, EventHook, SendHook, Uploader

log = logging.getLogger("tidings.client")

MEDIA_DIR = "media"


class AttachmentTampered(ClientError):
    """The downloaded blob does not match its pointer's digest or MAC: it was changed (by the
    server or on the way). Nothing of it is kept or shown."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            "attachment_tampered", f"the attachment failed its integrity check: {detail}"
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MediaFlow:
    """Attachments of one profile (module docstring)."""

    def __init__(
        self,
        profile: Path,
        store: LocalStore,
        rest: Rest,
        server_url: str,
        *,
        cache_bytes: int,
        auto_download_bytes: int,
        send: SendHook,
        changed: ChangedHook,
        progress: EventHook,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        root = profile / MEDIA_DIR
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self._store = store
        self._rest = rest
        self._changed = changed
        self._progress = progress
        self._incoming = root / "incoming"
        self._incoming.mkdir(mode=0o700, exist_ok=True)
        self.cache = MediaCache(root / "cache", cache_bytes)
        self.transfers = Transfers(server_url, verify)
        self.auto_download_bytes = auto_download_bytes
        self.uploads = Uploader(
            store, rest, self.transfers, self.cache, root / "outgoing",
            send=send, changed=changed, progress=progress,
        )  # fmt: skip
        self._downloads: dict[str, asyncio.Task[Path]] = {}

    async def close(self) -> None:
        await self.uploads.close()
        for task in list(self._downloads.values()):
            task.cancel()
        await self.transfers.aclose()

    # ------------------------------------------------------------------ sending

    def add_message(
        self,
        conv_id: str,
        account_id: str,
        path: Path,
        *,
        kind: str | None,
        caption: str,
        reply_to: uuid.UUID | None,
    ) -> uuid.UUID:
        """Store a new own message with one attachment as ``sending`` and start its upload."""
        info = detect_file(path)
        kind = kind or info.kind
        name = None if kind in ("image", "voice") else sanitize_file_name(info.name)
        message_id = uuid.uuid4()
        now = _now_ms()
        db = self._store.db
        with self._store.transaction():
            (order,) = db.execute(
                "SELECT COALESCE(MAX(ord), ?) + 1 FROM messages WHERE conv_id = ? AND ord > ?",
                (UNSENT_ORD, conv_id, UNSENT_ORD),
            ).fetchone()
            db.execute(
                "INSERT INTO messages (id, conv_id, seq, ord, sender_id, is_own, kind, body,"
                " reply_to, status, created_at) VALUES (?, ?, NULL, ?, ?, 1, 'text', ?, ?,"
                " 'sending', ?)",
                (message_id.hex, conv_id, order, account_id, caption,
                 reply_to.hex if reply_to else None, now),
            )  # fmt: skip
            db.execute(
                "UPDATE conversations SET last_activity = ? WHERE id = ? AND last_activity < ?",
                (now, conv_id, now),
            )
            attachments.add_outgoing(
                db, message_id, kind=kind, mime=info.mime, size=info.size, file_name=name,
                source_path=str(path.resolve()),
            )  # fmt: skip
        self._changed([message_id], True)
        self.uploads.start(message_id, conv_id, caption, reply_to)
        return message_id

    def resume_pending(self) -> None:
        """Start again every upload a previous run left unfinished."""
        for message_id in attachments.unfinished_uploads(self._store.db):
            message = self._store.message(message_id)
            if message is not None:
                self.uploads.start(message_id, message.conv_id, message.body, message.reply_to)

    def owns(self, message_id: uuid.UUID) -> bool:
        return bool(attachments.rows(self._store.db, message_id))

    def retry(
        self, message: Message, resend: Callable[[Media], Awaitable[None]]
    ) -> Awaitable[None]:
        """Retry a failed own message with attachments: send the pointers again if they were
        uploaded, else start the upload again."""
        rows = attachments.rows(self._store.db, message.id)
        if all(r.state == "uploaded" for r in rows):
            media = Media(
                body=message.body, attachments=[r.pointer() for r in rows],
                reply_to=message.reply_to,
            )  # fmt: skip
            return resend(media)
        with self._store.transaction():
            self._store.db.execute(
                "UPDATE messages SET status = 'sending', fail_reason = NULL"
                " WHERE id = ? AND status = 'failed'",
                (message.id.hex,),
            )
            for r in rows:
                if r.state == "failed":
                    state = "uploading" if r.cipher_path else "preparing"
                    attachments.update(self._store.db, r.id, state=state, fail_reason=None)
        self._changed([message.id], False)
        self.uploads.start(message.id, message.conv_id, message.body, message.reply_to)
        return asyncio.sleep(0)

    # ------------------------------------------------------------------ receiving

    def on_added(self, message_ids: Sequence[uuid.UUID]) -> None:
        """Download small images of newly arrived messages in the background."""
        if self.auto_download_bytes <= 0:
            return
        for row in attachments.rows_of(self._store.db, message_ids):  # a burst: one query
            if (
                row.kind == "image"
                and row.state == "remote"
                and row.size <= self.auto_download_bytes
                and row.local_path is None
                and row.blob_id is not None
            ):
                self._start_download(row)

    def _start_download(self, row: attachments.Row) -> asyncio.Task[Path]:
        running = self._downloads.get(row.id)
        if running is not None and not running.done():
            return running
        task = asyncio.get_running_loop().create_task(self._download(row))
        self._downloads[row.id] = task

        def done(t: asyncio.Task[Path]) -> None:
            self._downloads.pop(row.id, None)
            if not t.cancelled() and t.exception() is not None:
                log.info("download of %s failed: %s", row.id, t.exception())

        task.add_done_callback(done)
        return task

    async def download(
        self,
        message_id: uuid.UUID,
        dest: Path | None = None,
        progress: Progress | None = None,
        index: int = 0,
    ) -> Path:
        rows = attachments.rows(self._store.db, message_id)
        if not rows or index >= len(rows):
            raise ClientError("not_found", "the message has no such attachment")
        row = rows[index]
        cached = self.cache.get(row.id)
        if cached is None:
            if progress is None:
                cached = await asyncio.shield(self._start_download(row))
            else:
                cached = await self._download(row, progress)
        if dest is None:
            return cached
        dest = Path(dest)
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        dest = dest / _file_name(row)
        await asyncio.to_thread(shutil.copyfile, cached, dest)
        return dest

    async def _download(self, row: attachments.Row, progress: Progress | None = None) -> Path:
        if row.blob_id is None or row.key is None or row.digest is None:
            raise ClientError("not_available", "the attachment has not been uploaded")
        answer = await self._rest.call(routes.DOWNLOAD_URL, DownloadUrl, blob_id=row.blob_id)
        cipher = self._incoming / f"{row.id}.enc"
        plain = self._incoming / f"{row.id}.plain"
        last = [0]

        def moved(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)
            if done - last[0] >= total // 50 or done == total:
                last[0] = done
                self._progress(TransferProgress(row.message_id, row.id, "down", done, total))

        try:
            await self.transfers.get(answer.url, cipher, answer.size, moved)
            key, digest, size = row.key, row.digest, row.size

            def verify_and_decrypt() -> None:
                fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                with cipher.open("rb") as src, os.fdopen(fd, "wb") as out:
                    decrypt_stream(src, out, key=key, digest=digest, size=size)

            try:
                await asyncio.to_thread(verify_and_decrypt)
            except (InvalidMacError, InvalidMessageError, InvalidKeyError) as exc:
                raise AttachmentTampered(str(exc)) from None
            path = await asyncio.to_thread(self.cache.put_file, row.id, plain)
        finally:
            for leftover in (cipher, plain):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        with self._store.transaction():
            attachments.update(self._store.db, row.id, local_path=str(path))
        self._changed([row.message_id], False)
        return path


def _file_name(row: attachments.Row) -> str:
    if row.file_name:
        return sanitize_file_name(row.file_name)
    extension = {
        "image/jpeg": ".jpg", "audio/ogg; codecs=opus": ".ogg", "video/mp4": ".mp4",
    }.get(row.mime, "")  # fmt: skip
    return f"{row.kind}-{row.id[:8]}{extension}"
