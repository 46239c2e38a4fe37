"""The part of :class:`~tidings.client.Client` that profiles, blocking, typing indicators,
read receipts and the device list add (a mixin; docs/client-api.md, "Profiles, blocking,
typing"). The rules the server enforces are in :mod:`tidings.server.social`.

- Profiles: a random profile key per account seals name, about text and avatar
  (:mod:`tidings.crypto.profile`); the server keeps the blob. The key travels as
  ``ProfileKey`` content inside end-to-end-encrypted messages: before the first own message
  in a conversation, when a conversation gets something from others (they wrote first, a
  group was created or joined), and into every conversation without a blocked member when
  it rotates. Contacts' profiles are fetched when their key arrives or changes and checked
  again every ten minutes at a sync.
- Blocking: the server stops the blocked account's direct messages and device messages and
  its view of our receipts; this device also drops every message of theirs (groups too)
  and rotates the profile key, so the new one never reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tidings.crypto.profile import (
    MAX_AVATAR_BYTES,
    ProfileData,
    ProfileError,
    new_profile_key,
    open_profile,
    seal_profile,
)
from tidings.protocol import Receipt, TypingNotice, Watermark, Welcome, rest, routes
from tidings.protocol import social as wire
from tidings.protocol.content import Content, ProfileKey
from tidings.protocol.frames import ServerFrame, Typing

from ..errors import ClientError, ServerRefused
from ..types import (
    ClientEvent,
    Conversation,
    ConversationUpdated,
    DeviceInfo,
    Profile,
    TypingChanged,
)
from . import edits, profiles
from .typing import TypingTracker

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from ..core.engine import Engine
    from ..rest import Rest
    from ..runtime import Runtime
    from ..store import Changes, LocalStore
    from ..types import Account

log = logging.getLogger("tidings.client")

#: avatar JPEG qualities tried in turn until it fits MAX_AVATAR_BYTES
_AVATAR_QUALITIES = (85, 75, 65, 50, 35, 20)
AVATAR_SIDE = 256


def avatar_jpeg(source: Path | bytes) -> bytes:
    """A picture as a profile avatar: upright, ≤ 256 px, metadata-free JPEG ≤ 64 KiB."""
    import io

    from ..media.image import prepare_image

    for quality in _AVATAR_QUALITIES:
        data = io.BytesIO(source) if isinstance(source, bytes) else str(source)
        prepared = prepare_image(data, max_side=AVATAR_SIDE, quality=quality)
        if len(prepared.data) <= MAX_AVATAR_BYTES:
            return prepared.data
    raise ClientError("payload_too_large", "the avatar does not fit in 64 KiB")


class SocialFeatures:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        account: Account
        _store: LocalStore
        _engine: Engine
        _runtime: Runtime
        _rest: Rest

        def _check_open(self) -> None: ...
        async def _send(self, conv_id: str, content: Content) -> uuid.UUID: ...
        def _emit(self, event: ClientEvent) -> None: ...
        def _emit_conversation(self, conv_id: str) -> None: ...
        def _in_background(self, work: Coroutine[None, None, None]) -> None: ...
        async def _account_id(self, username: str) -> str: ...
        async def conversation(self, conv_id: str) -> Conversation: ...

    def _social_init(self) -> None:
        self._typing = TypingTracker()
        self._typing_timer: asyncio.TimerHandle | None = None
        self._fetching_profiles = False
        self._runtime.observe = self._observe

    def _social_close(self) -> None:
        if self._typing_timer is not None:
            self._typing_timer.cancel()
            self._typing_timer = None

    # ------------------------------------------------------------------ settings

    def _local(self, key: str) -> bool:
        row = self._store.db.execute(
            "SELECT value FROM client_settings WHERE key = ?", (key,)
        ).fetchone()
        return row is None or row[0] != "off"

    def _set_local(self, key: str, on: bool) -> None:
        self._store.db.execute(
            "INSERT OR REPLACE INTO client_settings VALUES (?, ?)", (key, "on" if on else "off")
        )

    async def _settings(self, body: rest.UpdateSettings | None = None) -> rest.AccountSettings:
        self._check_open()
        if body is None:
            found = await self._rest.call(routes.SETTINGS, rest.AccountSettings)
        else:
            found = await self._rest.call(routes.UPDATE_SETTINGS, rest.AccountSettings, body)
        self._set_local("read_receipts", found.read_receipts)
        self._set_local("typing_indicators", found.typing_indicators)
        return found

    async def read_receipts(self) -> bool:
        """Whether this account sends read receipts (and so sees others')."""
        return (await self._settings()).read_receipts

    async def set_read_receipts(self, on: bool) -> bool:
        """Turn read receipts on or off for every device of the account. Off: others are not
        told when you read (your devices still share your read position) and you are not told
        when they read: own messages stop at ``delivered``. The server enforces both."""
        return (await self._settings(rest.UpdateSettings(read_receipts=on))).read_receipts

    async def typing_indicators(self) -> bool:
        return (await self._settings()).typing_indicators

    async def set_typing_indicators(self, on: bool) -> bool:
        """Turn typing indicators on or off (account-wide): off, none are sent or shown."""
        return (await self._settings(rest.UpdateSettings(typing_indicators=on))).typing_indicators

    # ------------------------------------------------------------------ typing

    async def typing(self, conv_id: str) -> None:
        """The user typed a key in ``conv_id`` (call it for each): ``Typing`` frames go out
        throttled (at once, then every 3 s; "off" after 5 s idle or on send)."""
        self._check_open()
        if not self._local("typing_indicators"):
            return
        if self._typing.keystroke(conv_id, asyncio.get_running_loop().time()):
            await self._runtime.transmit_now(Typing(conv=conv_id, on=True))
        self._typing_schedule()

    async def stop_typing(self, conv_id: str) -> None:
        """The draft was cleared (sending a message stops typing by itself)."""
        if self._typing.stop(conv_id):
            await self._runtime.transmit_now(Typing(conv=conv_id, on=False))

    def typing_now(self, conv_id: str) -> list[str]:
        """Account ids shown as typing in ``conv_id`` right now."""
        return self._typing.typing_in(conv_id)

    def _typing_schedule(self) -> None:
        if self._typing_timer is not None:
            self._typing_timer.cancel()
            self._typing_timer = None
        wakeup = self._typing.next_wakeup()
        if wakeup is not None:
            loop = asyncio.get_running_loop()
            self._typing_timer = loop.call_at(wakeup, self._typing_tick)

    def _typing_tick(self) -> None:
        self._typing_timer = None
        now = asyncio.get_running_loop().time()
        for conv_id in self._typing.idle(now):
            self._in_background(self._typing_off(conv_id))
        for conv_id, account_id in self._typing.expired(now):
            self._emit_typing(conv_id, account_id, False)
        self._typing_schedule()

    async def _typing_off(self, conv_id: str) -> None:
        await self._runtime.transmit_now(Typing(conv=conv_id, on=False))

    def _emit_typing(self, conv_id: str, account_id: str, on: bool) -> None:
        name = profiles.display_name(self._store.db, account_id) or account_id
        self._emit(TypingChanged(conv_id, account_id, name, on))

    def _observe(self, frame: ServerFrame) -> None:
        """Every frame from the server, before the engine: typing notices (shown for 6 s
        unless refreshed) and the times in receipts."""
        db = self._store.db
        if isinstance(frame, TypingNotice):
            if (
                frame.account == self.account.account_id
                or not self._local("typing_indicators")
                or profiles.is_blocked(db, frame.account)
            ):
                return
            now = asyncio.get_running_loop().time()
            if self._typing.heard(frame.conv, frame.account, frame.on, now):
                self._emit_typing(frame.conv, frame.account, frame.on)
            self._typing_schedule()
        elif isinstance(frame, Receipt):
            if frame.account != self.account.account_id:
                profiles.record_times(
                    db, frame.conv, frame.account, frame.delivered_at, frame.read_at
                )
        elif isinstance(frame, Welcome):
            self._record_marks(frame.watermarks)

    def _record_marks(self, marks: list[Watermark]) -> None:
        for mark in marks:
            if mark.account != self.account.account_id:
                profiles.record_times(
                    self._store.db, mark.conv, mark.account, mark.delivered_at, mark.read_at
                )

    # ------------------------------------------------------------------ profiles

    async def set_profile(
        self,
        name: str | None = None,
        about: str | None = None,
        avatar: Path | bytes | None = None,
        *,
        remove_avatar: bool = False,
    ) -> Profile:
        """Change this account's profile (fields left None keep their value; ``avatar`` is
        a picture file or its bytes, made a ≤ 256 px JPEG here). It is encrypted under the
        profile key (made now the first time, and then shared with every conversation) and
        uploaded. Raises ``bad_profile`` for a name over 64 or an about text over 280
        characters."""
        self._check_open()
        me = self.account.account_id
        db = self._store.db
        current = profiles.stored(db, me)
        data = ProfileData(
            name=(current.name if current else "") if name is None else name.strip(),
            about=(current.about if current else "") if about is None else about.strip(),
            avatar=b""
            if remove_avatar
            else avatar_jpeg(avatar)
            if avatar is not None
            else (current.avatar or b"")
            if current
            else b"",
        )
        own = profiles.own_key(db)
        key = own[0] if own is not None else new_profile_key()
        try:
            await self._upload_profile(key, data, own[1] if own is not None else 0)
        except ValueError as exc:
            raise ClientError("bad_profile", str(exc)) from None
        if own is None:
            await self._share_everywhere()
        return await self.profile_of()

    async def _upload_profile(self, key: bytes, data: ProfileData, known: int) -> None:
        me = self.account.account_id
        version = known
        try:
            stored = await self._rest.call(routes.PROFILE, wire.Profile, account_id=me)
            version = max(version, stored.version)
        except ServerRefused as exc:
            if exc.status != 404:
                raise
        blob = seal_profile(key, me, version + 1, data)
        answer = await self._rest.call(
            routes.SET_PROFILE, wire.Profile, wire.ProfileUpload(version=version + 1, blob=blob)
        )
        with self._store.transaction():
            profiles.set_own_key(self._store.db, key, answer.version)
            profiles.take_key(self._store.db, me, key, me)
            fields = (data.name, data.about, data.avatar)
            profiles.save_profile(self._store.db, me, key, answer.version, fields)
        for conv in self._store.conversations():
            if any(m.account_id == me for m in conv.members):
                self._emit_conversation(conv.id)

    async def profile_of(self, username: str | None = None) -> Profile:
        """A profile: this account's (``username`` None, or one's own), or a contact's,
        fetched again from the server when we have their profile key."""
        self._check_open()
        db = self._store.db
        if username is None or username.removeprefix("@") == self.account.username:
            account_id, name = self.account.account_id, self.account.username
        else:
            name = username.removeprefix("@")
            account_id = self._store.account_id_of(name) or await self._account_id(name)
            with contextlib.suppress(ClientError):
                await self._fetch_profile(account_id)
        found = profiles.stored(db, account_id)
        if found is None:
            return Profile(account_id, name, name, "", None, 0, False)
        return Profile(
            account_id, name, found.name or name, found.about, found.avatar, found.version,
            found.has_key,
        )  # fmt: skip

    def known_profile(self, account_id: str) -> Profile | None:
        """What this device holds of a profile, without asking the server (None: nothing yet);
        for drawing avatars and names in lists. ``profile_of`` fetches it again."""
        found = profiles.stored(self._store.db, account_id)
        if found is None:
            return None
        name = found.name or ""
        return Profile(
            account_id, "", name, found.about, found.avatar, found.version, found.has_key
        )  # fmt: skip

    async def rotate_profile_key(self) -> None:
        """A new profile key: the profile is sealed and uploaded again under it and the key
        shared with every conversation that holds no blocked account. Whoever has only the
        old key can no longer read the profile."""
        self._check_open()
        db = self._store.db
        me = self.account.account_id
        own = profiles.own_key(db)
        if own is None:
            return  # no profile: nothing to protect
        current = profiles.stored(db, me)
        data = ProfileData(
            name=current.name if current else "",
            about=current.about if current else "",
            avatar=(current.avatar or b"") if current else b"",
        )
        await self._upload_profile(new_profile_key(), data, own[1])
        await self._share_everywhere()

    async def _share_everywhere(self) -> None:
        for conv_id in profiles.shareable(self._store.db, self.account.account_id):
            try:
                await self._share_profile_key(conv_id)
            except ClientError as exc:
                log.info("sharing the profile key failed: %s", exc.code)

    async def _share_profile_key(self, conv_id: str) -> None:
        """Give ``conv_id`` our profile key unless it has the current one (or holds someone we
        block)."""
        db = self._store.db
        own = profiles.own_key(db)
        if own is None or not profiles.needs_key(db, conv_id, own[0]):
            return
        if profiles.has_blocked_member(db, conv_id):
            return
        with self._store.transaction():
            profiles.mark_shared(db, conv_id, own[0])
        await self._send(conv_id, ProfileKey(key=own[0]))

    async def _before_send(self, conv_id: str) -> None:
        """Hook of every own message: our profile key goes first, typing stops."""
        await self._share_profile_key(conv_id)
        await self.stop_typing(conv_id)

    async def _fetch_profile(self, account_id: str) -> bool:
        """Fetch and open one profile; True if what is shown of it changed."""
        db = self._store.db
        key = profiles.key_of(db, account_id)
        if key is None:
            return False
        before = profiles.stored(db, account_id)
        try:
            found = await self._rest.call(routes.PROFILE, wire.Profile, account_id=account_id)
        except ServerRefused as exc:
            if exc.status != 404:
                raise
            profiles.save_profile(db, account_id, key, 0, None)
            return False
        try:
            data = open_profile(key, account_id, found.version, found.blob)
        except ProfileError:
            # rotated away from us (we were blocked) or not a profile: show the username
            profiles.forget_fields(db, account_id)
            profiles.save_profile(db, account_id, key, found.version, None)
        else:
            fields = (data.name, data.about, data.avatar)
            profiles.save_profile(db, account_id, key, found.version, fields)
        after = profiles.stored(db, account_id)
        return (
            before is None
            or after is None
            or (before.name, before.avatar)
            != (
                after.name,
                after.avatar,
            )
        )

    async def _fetch_profiles(self, due_only: bool) -> None:
        if self._fetching_profiles:
            return
        self._fetching_profiles = True
        try:
            for account_id in profiles.to_fetch(self._store.db, due_only=due_only):
                self._check_open()
                try:
                    changed = await self._fetch_profile(account_id)
                except ServerRefused:
                    continue
                if changed:
                    self._names_changed(account_id)
        finally:
            self._fetching_profiles = False

    def _names_changed(self, account_id: str) -> None:
        for conv in self._store.conversations():
            if any(m.account_id == account_id for m in conv.members):
                self._emit(ConversationUpdated(conv))

    def _social_applied(self, changes: Changes, synced: bool) -> None:
        """Hook of every applied batch: drop messages of blocked accounts, share our profile
        key where others wrote, fetch profiles whose key arrived (all due ones after a
        sync)."""
        db = self._store.db
        received = [i.hex for i in changes.added if i not in changes.built]  # not own texts
        if received:
            hidden = set(profiles.from_blocked(db, received))
            if hidden:
                with self._store.transaction():
                    for message_id in hidden:
                        edits.delete_for_me(db, uuid.UUID(message_id))
                changes.added[:] = [i for i in changes.added if i.hex not in hidden]
        own = profiles.own_key(db)
        if own is not None and changes.added:
            for conv_id in sorted(changes.conversations):
                if profiles.needs_key(db, conv_id, own[0]):
                    self._in_background(self._share_profile_key(conv_id))
        if synced or profiles.to_fetch(db, due_only=True):
            self._in_background(self._fetch_profiles(due_only=not synced))

    # ------------------------------------------------------------------ blocking

    async def block(self, username: str) -> None:
        """Block an account: its direct messages and device messages no longer reach this
        account (it is not told: its messages are accepted and stay ``sent``), it sees none
        of our receipts there, this device drops its group messages too, and our profile key
        is rotated so that it cannot read our profile any more."""
        account_id = await self._account_id(username)
        await self._rest.send(routes.BLOCK, account_id=account_id)
        with self._store.transaction():
            profiles.set_blocked(self._store.db, account_id, True)
        await self.rotate_profile_key()

    async def unblock(self, username: str) -> None:
        account_id = await self._account_id(username)
        await self._rest.send(routes.UNBLOCK, account_id=account_id)
        with self._store.transaction():
            profiles.set_blocked(self._store.db, account_id, False)

    async def blocked(self) -> list[str]:
        """Usernames of the accounts this account blocks (from the server)."""
        self._check_open()
        found = await self._rest.call(routes.BLOCKED, list[wire.BlockedAccount])
        with self._store.transaction():
            profiles.replace_blocked(self._store.db, [b.account_id for b in found])
        return [b.username for b in found]

    def is_blocked(self, account_id: str) -> bool:
        return profiles.is_blocked(self._store.db, account_id)

    # ------------------------------------------------------------------ devices

    async def devices(self) -> list[DeviceInfo]:
        """This account's devices with their names, when they were added and last connected."""
        self._check_open()
        found = await self._rest.call(routes.DEVICES, list[wire.DeviceInfo])
        here = self.account.device_id
        return [
            DeviceInfo(d.device_id, d.name, d.created_at, d.last_seen, d.device_id == here)
            for d in found
        ]
