"""Push wake-ups and notifications on the client: mentions, per-chat notification settings and
the decision whether a received message alerts this device.

Guarantees, first:

* Mentions are computed from the text right before a message is sealed: ``@username`` of a
  member of the conversation, and the author of the message it replies to, become account
  ids on ``Send.mentions`` (the server sees who is mentioned, never the text). Reactions,
  edits and deletions go out with ``Send.quiet``: they never alert anybody.
* The notification level and mute of a conversation live on the server, the same on all of
  the account's devices (``Conversation.notify_level``/``muted_until``); this module keeps the
  copy each refresh brings, with the conversation's push hint, in the ``push_notify`` table.
* :func:`should_notify` alerts only for someone else's message that nobody of this account
  has read yet, in a conversation that is not muted, at ``all`` or (at ``mentions``) when it
  mentions this account; a direct chat at ``mentions`` alerts for every message.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import msgspec

from tidings.migrations import migrate
from tidings.protocol import Send, rest
from tidings.protocol.content import decode_content
from tidings.protocol.push import MUTED_FOREVER, NotifyLevel

from .types import Message, MessageStatus

#: the client database's "push" component (tidings.migrations): notification settings and
#: push hints per conversation, and whether a message mentions this account
SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE push_notify (
        conv_id TEXT PRIMARY KEY,
        level TEXT NOT NULL DEFAULT 'all',
        muted_until INTEGER,
        hint TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX push_notify_hint ON push_notify (hint);
    ALTER TABLE messages ADD COLUMN mentions_me INTEGER NOT NULL DEFAULT 0;
    """,
)

#: content that changes what is shown but never alerts: it goes out with ``Send.quiet``
QUIET_CONTENT = frozenset({"Reaction", "Edit", "Delete"})
#: a mention in a text: @ and a username (protocol.rest.USERNAME_PATTERN), not inside a word
MENTION = re.compile(r"(?<![\w@])@([a-z0-9_.]{3,32})(?![a-z0-9_])", re.IGNORECASE)

#: how long ``tidings notify --mute`` and the app's mute choices last
MUTE_CHOICES: dict[str, int | None] = {
    "1h": 3600_000,
    "8h": 8 * 3600_000,
    "1w": 7 * 86_400_000,
    "always": None,
}
_DURATION = re.compile(r"^(\d{1,6})([mhdw])$")
_UNIT_MS = {"m": 60_000, "h": 3600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def migrate_schema(db: sqlite3.Connection) -> None:
    migrate(db, SCHEMA, component="push")


def mute_until(choice: str, now_ms: int | None = None) -> int:
    """``muted_until`` (ms) for a choice such as ``1h``, ``8h``, ``1w``, ``30m``, ``2d`` or
    ``always``; ValueError for anything else."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if choice == "always":
        return MUTED_FOREVER
    match = _DURATION.match(choice)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"not a mute duration: {choice!r} (e.g. 1h, 8h, 1w, always)")
    return now + int(match.group(1)) * _UNIT_MS[match.group(2)]


def mentioned_usernames(text: str) -> list[str]:
    """Usernames written as ``@name`` in ``text``, lowercased, in order, once each."""
    return list(dict.fromkeys(m.group(1).lower() for m in MENTION.finditer(text)))


def mention_ids(
    text: str,
    members: Mapping[str, str],
    *,
    me: str,
    reply_author: str | None = None,
) -> list[str]:
    """Account ids the message mentions: ``@username`` of members (``members`` maps username
    to account id) and the author of the replied-to message; never the sender itself."""
    found = [members[name] for name in mentioned_usernames(text) if name in members]
    if reply_author is not None:
        found.append(reply_author)
    return [account for account in dict.fromkeys(found) if account != me]


def mention_spans(text: str, usernames: set[str]) -> list[tuple[int, int]]:
    """(start, end) of every ``@username`` of ``usernames`` in ``text`` (for highlighting)."""
    return [m.span() for m in MENTION.finditer(text) if m.group(1).lower() in usernames]


@dataclass(frozen=True)
class NotificationSetting:
    """A conversation's notification setting for this account (all devices alike)."""

    level: NotifyLevel = "all"
    #: ms since the epoch; None: not muted
    muted_until: int | None = None
    #: what pushes carry instead of the conversation id ("" until the first refresh)
    hint: str = ""

    def muted(self, now_ms: int) -> bool:
        return self.muted_until is not None and now_ms < self.muted_until


@dataclass(frozen=True)
class PushRegistration:
    platform: Literal["apns", "fcm", "webpush", "log"]
    token: str
    p256dh: str = ""
    auth: str = ""
    topic: str = ""
    updated_at: int | None = None


class PushState:
    """The client's push tables in the profile database."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def saved(self, conv: rest.Conversation) -> None:
        """Keep what the server says about this account's setting and hint of ``conv``."""
        self.set(conv.id, NotificationSetting(conv.notify_level, conv.muted_until, conv.push_hint))

    def set(self, conv_id: str, setting: NotificationSetting) -> None:
        hint = setting.hint or self.setting(conv_id).hint
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO push_notify (conv_id, level, muted_until, hint)"
                " VALUES (?, ?, ?, ?)",
                (conv_id, setting.level, setting.muted_until, hint),
            )

    def setting(self, conv_id: str) -> NotificationSetting:
        row = self.db.execute(
            "SELECT level, muted_until, hint FROM push_notify WHERE conv_id = ?", (conv_id,)
        ).fetchone()
        if row is None:
            return NotificationSetting()
        level: NotifyLevel = row[0] if row[0] in ("all", "mentions", "none") else "all"
        return NotificationSetting(level, row[1], row[2])

    def conversation_for_hint(self, hint: str) -> str | None:
        """The conversation a push's hint names, if this device knows it."""
        if not hint:
            return None
        row = self.db.execute("SELECT conv_id FROM push_notify WHERE hint = ?", (hint,)).fetchone()
        return str(row[0]) if row is not None else None

    def kind(self, conv_id: str) -> str:
        row = self.db.execute("SELECT kind FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        return str(row[0]) if row is not None else "group"

    def members(self, conv_id: str) -> dict[str, str]:
        """username → account id of the conversation's members."""
        return {
            str(name): str(account)
            for account, name in self.db.execute(
                "SELECT m.account_id, u.username FROM members m"
                " JOIN users u ON u.account_id = m.account_id WHERE m.conv_id = ?",
                (conv_id,),
            )
        }

    def author(self, message_id: uuid.UUID) -> str | None:
        row = self.db.execute(
            "SELECT sender_id FROM messages WHERE id = ?", (message_id.hex,)
        ).fetchone()
        return str(row[0]) if row is not None else None

    def should_notify(self, message: Message, now_ms: int | None = None) -> bool:
        if message.is_own:  # never, whatever the setting: no need to read it
            return False
        return should_notify(
            message,
            self.setting(message.conv_id),
            self.kind(message.conv_id),
            int(time.time() * 1000) if now_ms is None else now_ms,
        )

    def annotator(self, me: str) -> Callable[[Send], Send]:
        """What the runtime applies to each Send before sealing it: mentions and quiet."""

        def annotate(send: Send) -> Send:
            try:
                content = decode_content(send.payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return send
            if type(content).__name__ in QUIET_CONTENT:
                return msgspec.structs.replace(send, quiet=True)
            body = getattr(content, "body", None)  # a text, or a caption
            if not isinstance(body, str):
                return send
            reply_to = getattr(content, "reply_to", None)
            if reply_to is None and "@" not in body:  # names and answers no one (a bot's)
                return send
            author = self.author(reply_to) if isinstance(reply_to, uuid.UUID) else None
            # the members only for a text that names someone (a bot's stream mostly does not)
            members = self.members(send.conv) if mentioned_usernames(body) else {}
            mentions = mention_ids(body, members, me=me, reply_author=author)
            if mentions:
                return msgspec.structs.replace(send, mentions=mentions)
            return send

        return annotate


def should_notify(
    message: Message, setting: NotificationSetting, conv_kind: str, now_ms: int
) -> bool:
    """Whether ``message`` (just received) alerts this device."""
    if (
        message.is_own
        or message.kind not in ("text", "media")
        or message.status is MessageStatus.READ
    ):
        return False
    if setting.level == "none" or setting.muted(now_ms):
        return False
    if setting.level == "mentions" and conv_kind != "direct":
        return message.mentions_me
    return True
