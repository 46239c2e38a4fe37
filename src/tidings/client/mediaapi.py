"""The part of :class:`~tidings.client.Client` attachments add (a mixin): sending files and
voice notes, downloading, retrying a failed upload. The work is :mod:`.mediaflow`."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tidings.protocol import MAX_PAYLOAD_BYTES
from tidings.protocol.content import MAX_TEXT_CHARS, Media

from .core import engine
from .core.payload import encode_bound
from .errors import ClientError
from .transfer import Progress
from .types import (
    ClientEvent,
    ConversationUpdated,
    Message,
    MessageAdded,
    MessageUpdated,
    TransferProgress,
)

if TYPE_CHECKING:
    from .mediaflow import MediaFlow
    from .runtime import Runtime
    from .store import LocalStore
    from .types import Account


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AttachmentFeatures:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        account: Account
        _store: LocalStore
        _media: MediaFlow
        _engine: engine.Engine
        _runtime: Runtime

        def _check_open(self) -> None: ...
        def _emit(self, event: ClientEvent) -> None: ...

    async def send_file(
        self,
        conv_id: str,
        path: Path | str,
        caption: str | None = None,
        reply_to: uuid.UUID | None = None,
    ) -> Message:
        """Send the file at ``path``: its kind is detected from its content (a photo is
        re-encoded without metadata, a video gets a thumbnail, anything else goes as it is).
        Returns the message, stored as ``sending``; the upload runs in the background
        (:class:`~tidings.client.types.TransferProgress` events) and survives a restart."""
        return await self._send_attachment(conv_id, path, None, caption or "", reply_to)

    async def send_voice(self, conv_id: str, path: Path | str) -> Message:
        """Send the audio file at ``path`` as a voice note (Ogg Opus 24 kbps, waveform)."""
        return await self._send_attachment(conv_id, path, "voice", "", None)

    async def _send_attachment(
        self,
        conv_id: str,
        path: Path | str,
        kind: str | None,
        caption: str,
        reply_to: uuid.UUID | None,
    ) -> Message:
        self._check_open()
        source = Path(path)
        if not await asyncio.to_thread(source.is_file):
            raise ClientError("not_found", f"no such file: {source}")
        if len(caption) > MAX_TEXT_CHARS:
            raise ClientError("payload_too_large", f"at most {MAX_TEXT_CHARS} characters")
        if not self._store.has_conversation(conv_id):
            raise ClientError("not_found", "no such conversation")
        message_id = self._media.add_message(
            conv_id, self.account.account_id, source, kind=kind, caption=caption,
            reply_to=reply_to,
        )  # fmt: skip
        message = self._store.message(message_id)
        assert message is not None  # just stored
        return message

    async def wait_upload(self, message_id: uuid.UUID) -> Message | None:
        """Wait until the attachments of ``message_id`` are uploaded and the message went to
        the engine (or failed); the message as stored then."""
        await self._media.uploads.wait(message_id)
        return self._store.message(message_id)

    async def download(
        self,
        message_id: uuid.UUID,
        dest: Path | str | None = None,
        progress: Progress | None = None,
        index: int = 0,
    ) -> Path:
        """Download, verify and decrypt attachment ``index`` of a message into the media cache
        (and copy it into the directory ``dest``, made if needed, under the sender's file
        name); its path. ``progress`` is
        called with (bytes, of bytes). :class:`~tidings.client.mediaflow.AttachmentTampered`
        when the blob does not match its pointer."""
        self._check_open()
        target = None if dest is None else Path(dest)
        return await self._media.download(message_id, target, progress, index)

    async def _retry_attachment(self, message: Message) -> bool:
        """Retry a failed own message that carries attachments; False if it has none."""
        if not self._media.owns(message.id):
            return False

        async def resend(media: Media) -> None:
            payload = encode_bound(media, message.conv_id, message.id)
            item = engine.OutboxItem(message.id, message.conv_id, payload)
            self._engine.retry(item, self._runtime.now())
            await self._runtime.flush()
            self._runtime.wake()

        await self._media.retry(message, resend)
        return True

    async def _send_media(self, conv_id: str, message_id: uuid.UUID, media: Media) -> None:
        """Hand an uploaded attachment message to the engine (its row is already stored)."""
        payload = encode_bound(media, conv_id, message_id)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ClientError("payload_too_large", "the message is too large")
        item = engine.OutboxItem(message_id, conv_id, payload)
        self._engine.send(item, media, _now_ms(), self._runtime.now())
        await self._runtime.flush()
        self._runtime.wake()

    def _media_changed(self, ids: list[uuid.UUID], added: bool) -> None:
        conversations: set[str] = set()
        for message in self._store.messages(ids):
            self._emit(MessageAdded(message) if added else MessageUpdated(message))
            conversations.add(message.conv_id)
        for conv_id in conversations:
            found = self._store.conversation(conv_id)
            if found is not None:
                self._emit(ConversationUpdated(found))

    def _media_progress(self, event: TransferProgress) -> None:
        self._emit(event)
