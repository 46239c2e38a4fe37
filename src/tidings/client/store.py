"""The local store: one SQLite database (WAL) per profile.

Holds the account, conversations and members, messages (FTS5 over bodies, kept in sync by
triggers), reactions, attachments (schema only for now), the outbox, cursors and watermarks.
The engine's store effects are applied by :meth:`LocalStore.apply`, all of one batch in one
transaction; the query methods build the public value types. The store only stores: envelopes
arrive opened (:class:`~tidings.client.core.opening.StoreOpened`; the runtime decrypts them
inside :meth:`LocalStore.transaction`, so a decrypted message and the session state it advanced
commit together), and an effect still holding ciphertext is refused.

Message order: ``ord`` is the seq once the server assigned one, and for messages still sending
(or failed) a number above every seq, so they sort last. Pages are reverse cursors over ``ord``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from tidings.migrations import migrate
from tidings.migrations import version as schema_version
from tidings.protocol import Envelope, decode_system_event, rest
from tidings.protocol.content import Content, Delete, Edit, Media, ProfileKey, Reaction, Text

from . import attachments, channel_store, chatlist, fts
from .chatlist import NOTE_TO_SELF as NOTE_TO_SELF  # where it was first defined
from .core import engine
from .core.opening import WRITE_EFFECTS, OpenedEnvelope, StoreOpened
from .errors import ProfileCorrupt
from .features import edits, profiles
from .integrity import marker as integrity_marker
from .integrity import problems as integrity_problems
from .keystore import SCHEMA as KEYSTORE_SCHEMA
from .keystore import KeyStore
from .push import migrate_schema as push_schema
from .queries import DISPLAY_NAME, SELECT_MESSAGE
from .types import (
    MESSAGE_KINDS,
    Account,
    Conversation,
    Member,
    Message,
    MessageKind,
    MessageStatus,
    Page,
    SearchHit,
)

#: ``ord`` of unsent messages starts here (far above any seq)
UNSENT_ORD = 1 << 50
#: characters of the quoted message shown in a reply preview
PREVIEW_CHARS = 80
#: the local placeholder of a message that could not be decrypted
UNDECRYPTABLE_BODY = "This message could not be decrypted"

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
    CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        account_id TEXT NOT NULL,
        username TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        server_url TEXT NOT NULL
    );
    CREATE TABLE users (
        account_id TEXT PRIMARY KEY,
        username TEXT NOT NULL
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL DEFAULT 'group',
        title TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL DEFAULT 0,
        last_activity INTEGER NOT NULL DEFAULT 0,
        read_upto INTEGER NOT NULL DEFAULT 0,
        is_member INTEGER NOT NULL DEFAULT 1,
        known INTEGER NOT NULL DEFAULT 0          -- info and members loaded from the server
    );
    CREATE TABLE members (
        conv_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (conv_id, account_id)
    );
    CREATE TABLE messages (
        pk INTEGER PRIMARY KEY,                   -- stable rowid for the FTS index
        id TEXT NOT NULL UNIQUE,                  -- client-made UUID (hex)
        conv_id TEXT NOT NULL,
        seq INTEGER,                              -- NULL until the server accepted it
        ord INTEGER NOT NULL,
        sender_id TEXT NOT NULL,
        sender_device INTEGER NOT NULL DEFAULT 0,
        is_own INTEGER NOT NULL,
        kind TEXT NOT NULL,                       -- 'text' | 'system' (types.MessageKind)
        body TEXT NOT NULL DEFAULT '',
        meta BLOB,                                -- the SystemEvent of a system message
        reply_to TEXT,
        status TEXT NOT NULL,
        fail_reason TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX messages_conv_seq ON messages (conv_id, seq);
    CREATE INDEX messages_conv_created ON messages (conv_id, created_at);
    CREATE INDEX messages_conv_ord ON messages (conv_id, ord);
    CREATE TABLE attachments (
        id TEXT PRIMARY KEY,
        message_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        key BLOB,
        digest BLOB,
        url TEXT,
        width INTEGER,
        height INTEGER,
        blurhash TEXT,
        duration REAL,
        waveform BLOB,
        local_path TEXT
    );
    CREATE INDEX attachments_message ON attachments (message_id);
    CREATE TABLE reactions (
        message_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        emoji TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (message_id, account_id, emoji)
    );
    CREATE TABLE outbox (
        id TEXT PRIMARY KEY,
        conv_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE cursors (
        conv_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    CREATE TABLE watermarks (
        conv_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        delivered INTEGER NOT NULL,
        read INTEGER NOT NULL,
        PRIMARY KEY (conv_id, account_id)
    );
    """,
    # (the FTS5 index over bodies, messages_fts, and its triggers: fts.prepare after these,
    # only where SQLite has FTS5)
    # 2: own messages still waiting for receipts, found without a scan (syncs, promotions)
    """
    CREATE INDEX messages_own_open ON messages (conv_id, seq)
        WHERE is_own = 1 AND status IN ('sent', 'delivered');
    """,
    # 3: end-to-end encryption: keys, sessions, sender keys, identities (keystore.py)
    KEYSTORE_SCHEMA[0],
    # 4: the lines the client writes itself get kinds of their own (they were 'system' lines
    # told apart by their English sentence)
    """
    UPDATE messages SET kind = 'undecryptable'
        WHERE kind = 'system' AND meta IS NULL AND body = 'This message could not be decrypted';
    UPDATE messages SET kind = 'identity_changed'
        WHERE kind = 'system' AND meta IS NULL AND body LIKE 'Your safety number with % changed';
    """,
    # 5: unread counts read from an index of others' texts alone (client/chatlist.py), not
    # from every row above the read mark
    """
    CREATE INDEX messages_unread ON messages (conv_id, seq) WHERE is_own = 0 AND kind = 'text';
    """,
    # 6: no query orders or finds messages by (conv_id, created_at): one index less to keep
    # up to date for every message stored
    """
    DROP INDEX IF EXISTS messages_conv_created;
    """,
)


# Each spells out the partial index's condition so that SQLite uses messages_own_open.
_PROMOTIONS = (
    (
        "read",
        "SELECT id FROM messages WHERE conv_id = ? AND seq <= ? AND is_own = 1"
        " AND status IN ('sent', 'delivered')",
        "UPDATE messages SET status = 'read' WHERE conv_id = ? AND seq <= ? AND is_own = 1"
        " AND status IN ('sent', 'delivered')",
    ),
    (
        "delivered",
        "SELECT id FROM messages WHERE conv_id = ? AND seq <= ? AND is_own = 1"
        " AND status IN ('sent', 'delivered') AND status = 'sent'",
        "UPDATE messages SET status = 'delivered' WHERE conv_id = ? AND seq <= ? AND is_own = 1"
        " AND status IN ('sent', 'delivered') AND status = 'sent'",
    ),
)


@dataclass(slots=True)
class Changes:
    """What one :meth:`LocalStore.apply` changed, for the client's events."""

    added: list[uuid.UUID] = field(default_factory=list)
    updated: list[uuid.UUID] = field(default_factory=list)
    conversations: set[str] = field(default_factory=set)
    #: (sender account, conversation, message id) of envelopes that did not decrypt
    undecryptable: list[tuple[str, str, uuid.UUID]] = field(default_factory=list)
    #: added messages as the store built them while writing (plain own texts): their
    #: events need no read of the rows (valid while nothing else in the batch changed them)
    built: dict[uuid.UUID, Message] = field(default_factory=dict)
    #: own messages the server accepted (also in ``updated``) → (seq, status) set
    sent: dict[uuid.UUID, tuple[int, MessageStatus]] = field(default_factory=dict)


def private_dir(path: Path) -> None:
    """Create the profile directory ``path`` readable by its owner only (0700), whatever the
    umask; an existing one is tightened to 0700 as well (it holds the token and the keys)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _private_file(path: Path | str) -> None:
    """Create the database file 0600 before SQLite opens it, so the ``-wal`` and ``-shm``
    files SQLite makes next to it get the same mode (an existing one is tightened too)."""
    name = os.fspath(path)
    if name == ":memory:" or name.startswith("file:"):
        return
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CREAT, 0o600)
    except OSError:
        return  # no such directory, no permission: SQLite reports it
    try:
        with contextlib.suppress(PermissionError):  # not ours: leave it
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(name + suffix, 0o600)


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("not a database", "malformed", "corrupt"))


class LocalStore:
    """The profile's database. Not thread-safe: one asyncio loop uses it."""

    def __init__(self, path: Path | str, integrity: Literal["now", "later"] = "now") -> None:
        """Open (and migrate) the database at ``path``. ``integrity="later"`` leaves the full
        integrity check to :func:`~tidings.client.integrity.check_in_background`, unless an
        earlier one found damage (client/integrity.py)."""
        _private_file(path)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._open(integrity == "now" or integrity_marker(path).exists())
        except sqlite3.DatabaseError as exc:  # not a database, a malformed image
            self.db.close()
            if isinstance(exc, sqlite3.OperationalError) and not _damaged(exc):
                raise  # locked, read-only, a failed migration: not damage
            raise ProfileCorrupt(os.fspath(path), str(exc)) from None
        except ProfileCorrupt:
            self.db.close()
            raise

    def _open(self, check: bool) -> None:
        """Settings, the integrity check (``check``) and migrations; :class:`ProfileCorrupt`
        (or the ``sqlite3.DatabaseError`` that becomes one) for a damaged database."""
        path = self.db.execute("PRAGMA database_list").fetchone()[2]
        self.db.execute("PRAGMA journal_mode=WAL")
        # A commit reaches the WAL file at once (an app that is killed loses nothing) but is
        # synced to disk only at checkpoints: a power cut may take the last ones back. What
        # messengers do; a sync per commit would cost every sent message a disk flush.
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Fewer checkpoints (each one syncs): one per ~16 MiB of WAL instead of 4 MiB.
        self.db.execute("PRAGMA wal_autocheckpoint=4000")
        self.db.execute("PRAGMA busy_timeout=5000")
        if check:
            found = integrity_problems(self.db)
            if found:
                raise ProfileCorrupt(path or ":memory:", "; ".join(found))
            if path:
                integrity_marker(path).unlink(missing_ok=True)  # repaired, or restored
        self.migrate()
        #: "fts5", or "scan" on a SQLite without FTS5 (client/fts.py)
        self.search_mode: fts.SearchMode = fts.prepare(self.db)
        #: the device's keys, in this database (a decrypted message and the session state it
        #: advanced commit together)
        self.keys = KeyStore(self.db)
        self.account_id = ""
        account = self.account()
        if account is not None:
            self.account_id = account.account_id

    def close(self) -> None:
        self.db.close()

    @property
    def version(self) -> int:
        return schema_version(self.db)

    def migrate(self) -> None:
        """Bring the schema to the newest version, one migration per transaction."""
        migrate(self.db, MIGRATIONS)
        edits.migrate_schema(self.db)  # the "everyday" component: edits, tombstones, settings
        profiles.migrate_schema(self.db)  # "social": profiles, blocked, display names
        channel_store.migrate_schema(self.db)  # "channels": channels, signed posts, keys
        attachments.migrate_schema(self.db)
        push_schema(self.db)  # the "push" component: notification settings, mentions_me

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Join the open transaction, or run one around the block (ROLLBACK on error, and the
        key store's read caches are dropped: they may have seen rolled-back writes)."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN")
        try:
            with self.keys.guarded():
                yield
        except BaseException:
            self.db.execute("ROLLBACK")
            self.keys.forget_cached()
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ account

    def account(self) -> Account | None:
        row = self.db.execute(
            "SELECT account_id, username, device_id, server_url FROM account"
        ).fetchone()
        return None if row is None else Account(row[0], row[1], row[2], row[3])

    def set_account(self, account: Account) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO account VALUES (1, ?, ?, ?, ?)",
                (account.account_id, account.username, account.device_id, account.server_url),
            )
            self.db.execute(
                "INSERT OR REPLACE INTO users VALUES (?, ?)", (account.account_id, account.username)
            )
        self.account_id = account.account_id

    # ------------------------------------------------------------------ engine state

    def restored(self) -> engine.Restored:
        """The engine's state as persisted."""
        cursors = dict(self.db.execute("SELECT conv_id, seq FROM cursors"))
        outbox = [
            engine.OutboxItem(uuid.UUID(row[0]), row[1], row[2])
            for row in self.db.execute(
                "SELECT id, conv_id, payload FROM outbox ORDER BY created_at, rowid"
            )
        ]
        members: dict[str, set[str]] = {}
        for conv_id, account in self.db.execute(
            "SELECT m.conv_id, m.account_id FROM members m JOIN conversations c"
            " ON c.id = m.conv_id WHERE c.known = 1"
        ):
            members.setdefault(conv_id, set()).add(account)
        for (conv_id,) in self.db.execute("SELECT id FROM conversations WHERE known = 1"):
            members.setdefault(conv_id, set())
        marks: dict[str, dict[str, tuple[int, int]]] = {}
        for conv_id, account, delivered, read in self.db.execute("SELECT * FROM watermarks"):
            marks.setdefault(conv_id, {})[account] = (delivered, read)
        return engine.Restored(
            cursors=cursors,
            outbox=outbox,
            members={conv_id: frozenset(ids) for conv_id, ids in members.items()},
            watermarks=marks,
        )

    def apply(self, effects: Sequence[engine.Effect | StoreOpened]) -> Changes:
        """Apply the store effects among ``effects`` in one transaction (or the one open), in
        order. Envelopes must be opened first (:class:`~tidings.client.core.opening.Opener`)."""
        changes = Changes()
        if not any(isinstance(effect, WRITE_EFFECTS) for effect in effects):
            return changes  # pings, connection notices …: no empty transaction
        with self.transaction():
            self._apply(effects, changes)
        return changes

    def _apply(self, effects: Sequence[engine.Effect | StoreOpened], changes: Changes) -> None:
        # a burst of own messages: their conversations' order and activity, once each
        self._next_ord: dict[str, int] = {}
        self._activity: dict[str, int] = {}
        self._own_name: str | None = None
        # The engine interleaves what goes on the wire with what is stored (a Send after each
        # new message, a cursor move after each Accepted): only the writes count here, and a
        # cursor only rises (max), so its moves are written once per conversation at the end.
        cursors: dict[str, int] = {}
        writes: list[engine.Effect | StoreOpened] = []
        for effect in effects:
            if isinstance(effect, engine.AdvanceCursor):
                cursors[effect.conv_id] = max(effect.seq, cursors.get(effect.conv_id, 0))
            elif isinstance(effect, WRITE_EFFECTS):
                writes.append(effect)
        start, count = 0, len(writes)
        while start < count:
            effect = writes[start]
            # runs of own texts stored, and of Accepted ones (both come in bursts): a few
            # statements for the run instead of two per message
            end = start + 1
            if isinstance(effect, engine.StoreOutgoing) and type(effect.content) is Text:
                while end < count and _plain_outgoing(writes[end]):
                    end += 1
                texts = [e for e in writes[start:end] if isinstance(e, engine.StoreOutgoing)]
                self._outgoing_texts(texts, changes)
                start = end
                continue
            if isinstance(effect, engine.MarkSent):
                while end < count and isinstance(writes[end], engine.MarkSent):
                    end += 1
                self._sent(
                    [e for e in writes[start:end] if isinstance(e, engine.MarkSent)], changes
                )
                start = end
                continue
            start = end
            match effect:
                case StoreOpened():
                    self._opened(effect.conv_id, effect.messages, changes)
                case engine.StoreIncoming() | engine.StoreDeviceEnvelope():
                    raise TypeError("envelopes are opened before they are stored")
                case engine.StoreOutgoing():
                    self._outgoing(effect, changes)
                case engine.MarkFailed():
                    self.db.execute("DELETE FROM outbox WHERE id = ?", (effect.id.hex,))
                    self._set_status(
                        "UPDATE messages SET status = 'failed', fail_reason = ?"
                        " WHERE id = ? AND status = 'sending'",
                        (effect.code, effect.id.hex),
                        effect.id,
                        changes,
                    )
                case engine.StoreRetry():
                    self.db.execute(
                        "INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?)",
                        (effect.id.hex, effect.conv_id, effect.payload, 0),
                    )
                    self._set_status(
                        "UPDATE messages SET status = 'sending', fail_reason = NULL"
                        " WHERE id = ? AND status = 'failed'",
                        (effect.id.hex,),
                        effect.id,
                        changes,
                    )
                case engine.Promote():
                    self._promote(effect, changes)
                case engine.StoreWatermark():
                    self.db.execute(
                        "INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?, ?)",
                        (effect.conv_id, effect.account, effect.delivered, effect.read),
                    )
                case engine.StoreReadMark():
                    cur = self.db.execute(
                        "UPDATE conversations SET read_upto = ? WHERE id = ? AND read_upto < ?",
                        (effect.seq, effect.conv_id, effect.seq),
                    )
                    if cur.rowcount:
                        changes.conversations.add(effect.conv_id)
                case _:
                    pass  # not a store effect
        if cursors:
            self.db.executemany(
                "INSERT INTO cursors VALUES (?, ?) ON CONFLICT (conv_id)"
                " DO UPDATE SET seq = max(seq, excluded.seq)",
                cursors.items(),
            )
        for conv_id, at in self._activity.items():
            self._touch(conv_id, at)

    def _touch(self, conv_id: str, at: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO conversations (id) VALUES (?)", (conv_id,))
        self.db.execute(
            "UPDATE conversations SET last_activity = ? WHERE id = ? AND last_activity < ?",
            (at, conv_id, at),
        )

    def _opened(self, conv_id: str, messages: Sequence[OpenedEnvelope], changes: Changes) -> None:
        """Store opened envelopes: system lines, texts, reactions, and a placeholder (and an
        event) for each one that did not decrypt."""
        newest = 0
        for opened in messages:
            env = opened.envelope
            newest = max(newest, env.ts)
            is_own = env.sender == self.account_id
            status = "sent" if is_own else "delivered"
            if env.kind == "system":
                inserted = self._insert(env, "system", "", env.payload, None, status, is_own)
            elif opened.undecryptable:
                body = UNDECRYPTABLE_BODY
                inserted = self._insert(env, "undecryptable", body, None, None, status, is_own)
                if inserted:
                    changes.undecryptable.append((env.sender, env.conv, env.id))
            else:
                inserted = self._content(env, opened.content, changes)
            if inserted:
                changes.added.append(env.id)
        if messages:
            self._touch(conv_id, newest)
            changes.conversations.add(conv_id)

    def _content(self, env: Envelope, content: Content | None, changes: Changes) -> bool:
        """Store decrypted content; True if a new message row was inserted."""
        is_own = env.sender == self.account_id
        status = "sent" if is_own else "delivered"
        if isinstance(content, Text):
            reply = content.reply_to.hex if content.reply_to else None
            return self._insert(env, "text", content.body, None, reply, status, is_own)
        if isinstance(content, Media):
            reply = content.reply_to.hex if content.reply_to else None
            if not self._insert(env, "text", content.body, None, reply, status, is_own):
                return False
            attachments.save_pointers(self.db, env.id, content.attachments)
            return True
        if isinstance(content, Reaction) and content.target is not None:
            self._react(content, env.sender, env.ts, changes)
        if isinstance(content, Edit | Delete):
            edits.apply_received(self.db, env, content, changes.updated)
        if isinstance(content, ProfileKey):
            profiles.take_key(self.db, env.sender, content.key, self.account_id)
        return False  # a reaction, or content this client does not understand: not shown

    def identity_line(self, account_id: str, at: int) -> tuple[str, uuid.UUID] | None:
        """Note in the direct conversation with ``account_id`` that its safety number changed
        (a local system line); (conversation, message id), or None without such a chat."""
        row = self.db.execute(
            "SELECT c.id FROM conversations c JOIN members m ON m.conv_id = c.id"
            " WHERE c.kind = 'direct' AND m.account_id = ? LIMIT 1",
            (account_id,),
        ).fetchone()
        if row is None:
            return None
        conv_id = str(row[0])
        message_id = uuid.uuid4()
        body = f"Your safety number with {self._name(account_id)} changed"
        with self.transaction():
            last = self.db.execute(
                "SELECT COALESCE(MAX(ord), 0) FROM messages WHERE conv_id = ? AND ord < ?",
                (conv_id, UNSENT_ORD),
            ).fetchone()
            self.db.execute(
                "INSERT INTO messages (id, conv_id, seq, ord, sender_id, is_own, kind, body,"
                " status, created_at)"
                " VALUES (?, ?, NULL, ?, ?, 0, 'identity_changed', ?, 'delivered', ?)",
                (message_id.hex, conv_id, last[0], account_id, body, at),
            )
        return conv_id, message_id

    def _insert(
        self,
        env: Envelope,
        kind: MessageKind,
        body: str,
        meta: bytes | None,
        reply_to: str | None,
        status: str,
        is_own: bool,
    ) -> bool:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO messages (id, conv_id, seq, ord, sender_id, sender_device,"
            " is_own, kind, body, meta, reply_to, status, created_at, mentions_me)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                env.id.hex,
                env.conv,
                env.seq,
                env.seq,
                env.sender,
                env.sender_device,
                is_own,
                kind,
                body,
                meta,
                reply_to,
                status,
                env.ts,
                not is_own and self.account_id in env.mentions,
            ),
        )
        return cur.rowcount > 0

    def _react(self, content: Reaction, account: str, at: int, changes: Changes) -> None:
        assert content.target is not None  # checked by the caller
        if content.remove:
            self.db.execute(
                "DELETE FROM reactions WHERE message_id = ? AND account_id = ? AND emoji = ?",
                (content.target.hex, account, content.emoji),
            )
        else:
            self.db.execute(
                "INSERT OR IGNORE INTO reactions VALUES (?, ?, ?, ?)",
                (content.target.hex, account, content.emoji, at),
            )
        changes.updated.append(content.target)

    def _outgoing(self, effect: engine.StoreOutgoing, changes: Changes) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?)",
            (effect.id.hex, effect.conv_id, effect.payload, effect.created_at),
        )
        content = effect.content
        if isinstance(content, Edit | Delete):
            if edits.allowed(self.db, content, effect.conv_id, self.account_id, effect.created_at):
                edits.apply(self.db, content, effect.created_at, changes.updated)
            return
        if isinstance(content, Reaction):
            if content.target is not None:
                self._react(content, self.account_id, effect.created_at, changes)
            return
        if isinstance(content, ProfileKey):
            return  # no row: the share is tracked by features.profiles
        ord_ = self._next_ord.get(effect.conv_id)
        if ord_ is None:
            (ord_,) = self.db.execute(
                "SELECT COALESCE(MAX(ord), ?) + 1 FROM messages WHERE conv_id = ? AND ord > ?",
                (UNSENT_ORD, effect.conv_id, UNSENT_ORD),
            ).fetchone()
        self._next_ord[effect.conv_id] = ord_ + 1
        cur = self.db.execute(
            "INSERT OR IGNORE INTO messages (id, conv_id, seq, ord, sender_id, is_own, kind,"
            " body, reply_to, status, created_at) VALUES (?, ?, NULL, ?, ?, 1, 'text', ?, ?,"
            " 'sending', ?)",
            (
                effect.id.hex,
                effect.conv_id,
                ord_,
                self.account_id,
                content.body,
                content.reply_to.hex if content.reply_to else None,
                effect.created_at,
            ),
        )
        if cur.rowcount:
            changes.added.append(effect.id)
            at = max(self._activity.get(effect.conv_id, 0), effect.created_at)
            self._activity[effect.conv_id] = at
            changes.conversations.add(effect.conv_id)

    def _outgoing_texts(self, run: Sequence[engine.StoreOutgoing], changes: Changes) -> None:
        """Store a run of own texts (:class:`Text`): their outbox rows in one statement, their
        messages (each with its search index entry, by trigger) in a few multi-row ones
        (:func:`_insert_many`), and build the messages without a reply for their events as
        the rows now read."""
        self.db.executemany(
            "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?)",
            [(e.id.hex, e.conv_id, e.payload, e.created_at) for e in run],
        )
        rows: list[tuple[object, ...]] = []
        for effect in run:
            ord_ = self._next_ord.get(effect.conv_id)
            if ord_ is None:
                (ord_,) = self.db.execute(
                    "SELECT COALESCE(MAX(ord), ?) + 1 FROM messages WHERE conv_id = ? AND ord > ?",
                    (UNSENT_ORD, effect.conv_id, UNSENT_ORD),
                ).fetchone()
            self._next_ord[effect.conv_id] = ord_ + 1
            content = effect.content
            assert isinstance(content, Text)
            reply_to = content.reply_to.hex if content.reply_to else None
            rows.append(
                (
                    effect.id.hex,
                    effect.conv_id,
                    ord_,
                    self.account_id,
                    content.body,
                    reply_to,
                    effect.created_at,
                )
            )
        inserted = _insert_many(
            self.db,
            "INSERT OR IGNORE INTO messages (id, conv_id, seq, ord, sender_id, is_own, kind,"
            " body, reply_to, status, created_at) VALUES ",
            "(?, ?, NULL, ?, ?, 1, 'text', ?, ?, 'sending', ?)",
            rows,
        )
        stored: set[tuple[object, object]] | None = None  # None: every row went in
        if inserted != len(rows):  # one existed already, or was deleted (a tombstone)
            stored = self._stored(rows)
        for effect, row in zip(run, rows, strict=True):
            if stored is not None and (row[0], row[2]) not in stored:
                continue
            changes.added.append(effect.id)
            at = max(self._activity.get(effect.conv_id, 0), effect.created_at)
            self._activity[effect.conv_id] = at
            changes.conversations.add(effect.conv_id)
            content = effect.content
            assert isinstance(content, Text)
            if content.reply_to is None:  # a reply's preview is read with the row
                changes.built[effect.id] = self._own_text(effect, content.body)

    def _stored(self, rows: Sequence[tuple[object, ...]]) -> set[tuple[object, object]]:
        """(id, ord) of the ``rows`` that went in: the ord given to a new row is above every
        ord there was (and unique), so a row that existed before has another one."""
        found: set[tuple[object, object]] = set()
        for start in range(0, len(rows), 500):
            chunk = [row[0] for row in rows[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            found.update(
                (r[0], r[1])
                for r in self.db.execute(
                    f"SELECT id, ord FROM messages WHERE id IN ({marks})",  # noqa: S608
                    chunk,
                )
            )
        return found

    def _own_text(self, effect: engine.StoreOutgoing, body: str) -> Message:
        """The message :meth:`messages` would read for a new own text without a reply."""
        if self._own_name is None:
            self._own_name = self.display_name(self.account_id)
        return Message(
            id=effect.id,
            conv_id=effect.conv_id,
            seq=None,
            sender_id=self.account_id,
            sender_name=str(self._own_name),
            is_own=True,
            kind="text",
            body=body,
            reply_to=None,
            reply_preview=None,
            reactions=(),
            status=MessageStatus.SENDING,
            fail_reason=None,
            created_at=effect.created_at,
        )

    def _sent(self, run: Sequence[engine.MarkSent], changes: Changes) -> None:
        """A run of ``Accepted`` own messages: out of the outbox, ``sent`` with their seq."""
        self.db.executemany("DELETE FROM outbox WHERE id = ?", [(e.id.hex,) for e in run])
        waiting: set[str] = set()  # still without a seq: the ones this run changes
        for start in range(0, len(run), 500):
            chunk = [e.id.hex for e in run[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            waiting.update(
                str(r[0])
                for r in self.db.execute(
                    f"SELECT id FROM messages WHERE seq IS NULL AND id IN ({marks})",  # noqa: S608
                    chunk,
                )
            )
        rows: list[tuple[int, int, str, str]] = []
        for effect in run:
            key = effect.id.hex
            if key in waiting:
                waiting.discard(key)  # a second Accepted for it in the run changes nothing
                rows.append((effect.seq, effect.seq, effect.status.value, key))
                changes.updated.append(effect.id)
                changes.sent[effect.id] = (effect.seq, effect.status)
                changes.conversations.add(effect.conv_id)
        self.db.executemany(
            "UPDATE messages SET seq = ?, ord = ?, status = ?, fail_reason = NULL"
            " WHERE id = ? AND seq IS NULL",
            rows,
        )

    def _set_status(
        self, sql: str, params: tuple[object, ...], msg_id: uuid.UUID, changes: Changes
    ) -> None:
        if self.db.execute(sql, params).rowcount:
            changes.updated.append(msg_id)

    def _promote(self, effect: engine.Promote, changes: Changes) -> None:
        # Only raise: read first (from sent or delivered), then delivered (from sent).
        for status, select, update in _PROMOTIONS:
            params = (effect.conv_id, effect.read if status == "read" else effect.delivered)
            ids = [uuid.UUID(r[0]) for r in self.db.execute(select, params)]
            if ids:
                self.db.execute(update, params)
                changes.updated += ids

    # ------------------------------------------------------------------ conversations

    def save_conversation(self, conv: rest.Conversation) -> frozenset[str]:
        """Store what the server says about a conversation; returns its member ids."""
        with self.transaction():
            self.db.execute(
                "INSERT INTO conversations (id, kind, title, created_at, last_activity, known)"
                " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind,"
                " title = excluded.title, created_at = excluded.created_at,"
                " last_activity = max(last_activity, excluded.last_activity), known = 1,"
                " is_member = 1",
                (conv.id, conv.kind, conv.title, conv.created_at, conv.created_at),
            )
            self.db.execute("DELETE FROM members WHERE conv_id = ?", (conv.id,))
            self.db.executemany(
                "INSERT INTO members VALUES (?, ?, ?)",
                [(conv.id, m.account_id, m.role) for m in conv.members],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO users VALUES (?, ?)",
                [(m.account_id, m.username) for m in conv.members],
            )
        return frozenset(m.account_id for m in conv.members)

    def left_conversation(self, conv_id: str) -> None:
        """This account is no longer a member of ``conv_id`` (it left or was removed)."""
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO conversations (id) VALUES (?)", (conv_id,))
            self.db.execute(
                "UPDATE conversations SET is_member = 0, known = 1 WHERE id = ?", (conv_id,)
            )
            self.db.execute(
                "DELETE FROM members WHERE conv_id = ? AND account_id = ?",
                (conv_id, self.account_id),
            )

    def has_conversation(self, conv_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        return row is not None

    def conversation(self, conv_id: str) -> Conversation | None:
        return chatlist.conversation(self, conv_id)

    def conversations(self) -> list[Conversation]:
        """Conversations this account is a member of, newest activity first."""
        return chatlist.conversations(self)

    def members(self, conv_id: str) -> tuple[Member, ...]:
        return chatlist.members(self, conv_id)

    def awaiting_receipts(self) -> list[str]:
        """Conversations with own messages that are not read by everyone yet."""
        rows = self.db.execute(
            "SELECT DISTINCT conv_id FROM messages WHERE is_own = 1"
            " AND status IN ('sent', 'delivered')"
        )
        return [str(r[0]) for r in rows]

    def read_upto(self, conv_id: str) -> int:
        """My read watermark in ``conv_id``."""
        row = self.db.execute(
            "SELECT read_upto FROM conversations WHERE id = ?", (conv_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def account_id_of(self, username: str) -> str | None:
        """The account id known locally for ``username`` (a member of a conversation)."""
        row = self.db.execute(
            "SELECT account_id FROM users WHERE username = ?", (username,)
        ).fetchone()
        return None if row is None else str(row[0])

    def username(self, account_id: str) -> str | None:
        row = self.db.execute(
            "SELECT username FROM users WHERE account_id = ?", (account_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ messages

    def display_name(self, account_id: str) -> str:
        """The name messages show for ``account_id`` (profile name, username, or the id)."""
        row = self.db.execute(
            f"SELECT {DISPLAY_NAME.format('?1')}",
            (account_id,),
        ).fetchone()
        return str(row[0])

    def message(self, msg_id: uuid.UUID) -> Message | None:
        rows = self.db.execute(SELECT_MESSAGE + " WHERE m.id = ?", (msg_id.hex,)).fetchall()
        return self.build_messages(rows)[0] if rows else None

    def messages(self, ids: Sequence[uuid.UUID]) -> list[Message]:
        """The messages with these ids that exist, in the order given."""
        found: dict[str, Message] = {}
        for start in range(0, len(ids), 500):
            chunk = [i.hex for i in ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(SELECT_MESSAGE + f" WHERE m.id IN ({marks})", chunk).fetchall()
            found.update((m.id.hex, m) for m in self.build_messages(rows))
        return [found[i.hex] for i in ids if i.hex in found]

    def history(self, conv_id: str, before: int | None, limit: int) -> Page:
        """Up to ``limit`` messages older than cursor ``before`` (newest page if None)."""
        bound = before if before is not None else 1 << 62
        rows = self.db.execute(
            SELECT_MESSAGE + " WHERE m.conv_id = ? AND m.ord < ? ORDER BY m.ord DESC LIMIT ?",
            (conv_id, bound, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        rows.reverse()
        return Page(tuple(self.build_messages(rows)), rows[0][14] if more and rows else None)

    def page_around(self, conv_id: str, msg_id: uuid.UUID, limit: int) -> Page | None:
        """A page of about ``limit`` messages with ``msg_id`` in the middle."""
        row = self.db.execute(
            "SELECT ord FROM messages WHERE id = ? AND conv_id = ?", (msg_id.hex, conv_id)
        ).fetchone()
        if row is None:
            return None
        newer = self.db.execute(
            SELECT_MESSAGE + " WHERE m.conv_id = ? AND m.ord > ? ORDER BY m.ord LIMIT ?",
            (conv_id, row[0], max(0, (limit - 1) // 2)),
        ).fetchall()
        older = self.history(conv_id, row[0] + 1, max(1, limit - len(newer)))
        return Page(older.messages + tuple(self.build_messages(newer)), older.before)

    def search(self, query: str, limit: int) -> list[SearchHit]:
        """Messages matching every word of ``query`` (the last word as a prefix), most recently
        stored first."""
        match = fts.fts_query(query)
        if match is None:
            return []
        if self.search_mode == "scan":
            found = fts.scan(self.db, query, limit)
            messages = {m.id: m for m in self.messages([i for i, _ in found])}
            return [SearchHit(messages[i], snip) for i, snip in found if i in messages]
        rows = self.db.execute(
            "SELECT m.id, snippet(messages_fts, 0, '[', ']', '…', 12) FROM messages_fts"
            " JOIN messages m ON m.pk = messages_fts.rowid WHERE messages_fts MATCH ?"
            " ORDER BY messages_fts.rowid DESC LIMIT ?",  # FTS5 walks its rowids backwards
            (match, limit),
        ).fetchall()
        ids = [uuid.UUID(r[0]) for r in rows]
        messages = {m.id: m for m in self.messages(ids)}
        return [SearchHit(messages[i], snip) for i, (_, snip) in zip(ids, rows, strict=True)]

    def build_messages(self, rows: Sequence[tuple[object, ...]]) -> list[Message]:
        """Build messages from ``SELECT_MESSAGE`` rows (with reactions and reply previews)."""
        ids = [str(r[0]) for r in rows]
        reactions: dict[str, list[tuple[str, str]]] = {}
        replies: dict[str, str] = {}
        if ids:
            marks = ",".join("?" * len(ids))
            for message_id, emoji, name in self.db.execute(
                f"SELECT r.message_id, r.emoji, {DISPLAY_NAME.format('r.account_id')}"  # noqa: S608
                f" FROM reactions r WHERE r.message_id IN ({marks})"
                " ORDER BY r.created_at, r.rowid",
                ids,
            ):
                reactions.setdefault(message_id, []).append((emoji, name))
            quoted = sorted({str(r[9]) for r in rows if r[9] is not None})
            if quoted:
                marks = ",".join("?" * len(quoted))
                for qid, name, body in self.db.execute(
                    f"SELECT m.id, {DISPLAY_NAME.format('m.sender_id')}, m.body"  # noqa: S608
                    f" FROM messages m WHERE m.id IN ({marks})",
                    quoted,
                ):
                    replies[qid] = f"{name}: {body[:PREVIEW_CHARS]}"
        built = [self._message(r, reactions.get(str(r[0]), []), replies) for r in rows]
        flags = {str(r[0]): (_int_or_none(r[17]), bool(r[18])) for r in rows}
        built = attachments.with_attachments(self.db, edits.with_flags(self.db, built, flags))
        return channel_store.with_verified(self.db, built)

    def _message(
        self, r: tuple[object, ...], reacts: list[tuple[str, str]], replies: dict[str, str]
    ) -> Message:
        (mid, conv_id, seq, sender, name, is_own, kind, body, meta, reply, status, fail) = r[:12]
        created_at, read_upto = r[12], r[13]
        assert isinstance(seq, int | None) and isinstance(created_at, int)
        assert isinstance(read_upto, int)
        if kind == "system" and isinstance(meta, bytes):
            body = self._system_sentence(meta)
        grouped: dict[str, list[str]] = {}
        for emoji, who in reacts:
            grouped.setdefault(emoji, []).append(who)
        if not is_own:
            status = "read" if seq is not None and seq <= read_upto else "delivered"
        return Message(
            id=uuid.UUID(str(mid)),
            conv_id=str(conv_id),
            seq=seq,
            sender_id=str(sender),
            sender_name=str(name),
            is_own=bool(is_own),
            kind=_kind(kind),
            body=str(body),
            reply_to=uuid.UUID(str(reply)) if reply is not None else None,
            reply_preview=replies.get(str(reply)) if reply is not None else None,
            reactions=tuple((e, tuple(w)) for e, w in grouped.items()),
            status=MessageStatus(str(status)),
            fail_reason=str(fail) if fail is not None else None,
            created_at=created_at,
            mentions_me=len(r) > 15 and bool(r[15]),
        )

    def _system_sentence(self, meta: bytes) -> str:
        """A human sentence for a system event, with the usernames known locally."""
        try:
            event = decode_system_event(meta)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return "the conversation changed"
        actor = self._name(event.actor)
        names = ", ".join(self._name(m) for m in event.members)
        match event.action:
            case "created":
                if event.title:
                    return f'{actor} created the group "{event.title}"'
                return f"{actor} started the conversation"
            case "member_added":
                return f"{actor} added {names}"
            case "member_removed":
                return f"{actor} removed {names}"
            case "member_left":
                return f"{actor} left"
            case _:
                return f'{actor} changed the title to "{event.title or ""}"'

    def _name(self, account_id: str) -> str:
        return profiles.display_name(self.db, account_id) or account_id


#: rows per multi-row INSERT, largest first: a run is split into chunks of these sizes, so
#: the statements (and SQLite's cache of them) are a few, whatever the length of the run
_CHUNKS = (64, 16, 4, 1)


def _insert_many(
    db: sqlite3.Connection, head: str, values: str, rows: Sequence[tuple[object, ...]]
) -> int:
    """``head`` (an ``INSERT ... VALUES``) for each of ``rows``, with ``values`` the
    placeholders of one row, as a few multi-row statements; the rows inserted.

    Not ``executemany``: a messages row's search entry is written by a trigger into FTS5,
    and FTS5 writes what it holds in memory to a new segment of its index at every statement
    savepoint, which SQLite opens for each INSERT into a table with triggers inside a
    transaction. One statement per row therefore made one index segment per message (and
    merges of them later): about three times the work of indexing the texts themselves."""
    done, start, count = 0, 0, len(rows)
    while start < count:
        size = next(c for c in _CHUNKS if c <= count - start)
        chunk = rows[start : start + size]
        sql = head + ",".join((values,) * size)
        done += db.execute(sql, [value for row in chunk for value in row]).rowcount
        start += size
    return done


def _plain_outgoing(effect: object) -> bool:
    return isinstance(effect, engine.StoreOutgoing) and type(effect.content) is Text


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _kind(value: object) -> MessageKind:
    for kind in MESSAGE_KINDS:
        if value == kind:
            return kind
    return "system"  # a kind of a newer version: shown as a line of its own
