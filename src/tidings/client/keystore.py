"""The device's key material in the profile's SQLite database (docs/e2ee.md).

:class:`KeyStore` implements every store protocol of :mod:`tidings.crypto` (identity, one-time
prekeys, signed prekeys, Kyber prekeys, sessions, sender keys) on the connection of the client's
:class:`~tidings.client.store.LocalStore`, so a decrypted message and the session state it advanced
are committed in one transaction: a write made while a transaction is open joins it; otherwise
the write is its own transaction.

Identities are kept per account (one identity key per account, shared by its linked devices)
with a ``verified`` flag, a ``blocked`` flag (the key changed after the user verified it: sending
stops until the user verifies again) and the history of changes. Key generation and maintenance
(the upload at account creation, refills, signed prekey rotation) live here too, as pure
functions of the stored state that return the :class:`~tidings.protocol.keys.KeyUpload` to send.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msgspec

from tidings.crypto import (
    IdentityKey,
    IdentityKeyPair,
    InvalidKyberPreKeyIdError,
    InvalidPreKeyIdError,
    InvalidSignedPreKeyIdError,
    KyberPreKeyRecord,
    PreKeyRecord,
    ProtocolAddress,
    SenderKeyRecord,
    SessionRecord,
    SignedPreKeyRecord,
)
from tidings.crypto.sender_keys import AddressLike
from tidings.crypto.stores import Direction
from tidings.migrations import Step, migrate, statements, version
from tidings.protocol import Envelope
from tidings.protocol import keys as wire

#: one-time prekeys (of each kind) generated at account creation and per refill
PREKEY_BATCH = 100
#: the server's count below which the client uploads a new batch
REFILL_BELOW = wire.PREKEY_REFILL_BELOW
#: the signed prekey is replaced after this many milliseconds
SIGNED_PREKEY_ROTATE_MS = 7 * 24 * 3600 * 1000
#: a replaced signed prekey stays usable (late PreKey messages) for this long
SIGNED_PREKEY_KEEP_MS = 30 * 24 * 3600 * 1000
#: Kyber prekey records kept loaded at most (each holds its expanded Kyber1024 secret key)
KYBER_PREKEYS_KEPT = 8
#: key ids are 24-bit on the wire
_MAX_KEY_ID = 2**24 - 1

#: the key store's row in ``schema_versions`` (:mod:`tidings.migrations`)
COMPONENT = "keystore"

#: The key store's migrations (SQL). The client store runs the first one as its own migration 3
#: (so a new profile gets every table in one place); its statements are idempotent, and
#: :class:`KeyStore` runs whatever is missing on any connection (also without a client store).
SCHEMA: tuple[str, ...] = (
    # 1: everything the device needs for end-to-end encryption
    """
    CREATE TABLE IF NOT EXISTS e2ee_local (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        identity BLOB NOT NULL,                 -- serialized IdentityKeyPair
        registration_id INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS e2ee_counters (
        name TEXT PRIMARY KEY,                  -- 'prekey' | 'signed' | 'kyber'
        next INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS e2ee_prekeys (
        id INTEGER PRIMARY KEY,
        record BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS e2ee_signed_prekeys (
        id INTEGER PRIMARY KEY,
        record BLOB NOT NULL,
        created_at INTEGER NOT NULL,            -- ms
        retired_at INTEGER                      -- ms, when a newer one replaced it
    );
    CREATE TABLE IF NOT EXISTS e2ee_kyber_prekeys (
        id INTEGER PRIMARY KEY,
        record BLOB NOT NULL,
        last_resort INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS e2ee_sessions (
        account_id TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        record BLOB NOT NULL,
        PRIMARY KEY (account_id, device_id)
    );
    CREATE TABLE IF NOT EXISTS e2ee_sender_keys (
        account_id TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        distribution_id TEXT NOT NULL,
        record BLOB NOT NULL,
        PRIMARY KEY (account_id, device_id, distribution_id)
    );
    CREATE TABLE IF NOT EXISTS e2ee_identities (
        account_id TEXT PRIMARY KEY,
        identity_key BLOB NOT NULL,
        verified INTEGER NOT NULL DEFAULT 0,
        blocked INTEGER NOT NULL DEFAULT 0,     -- changed after being verified
        first_seen INTEGER NOT NULL,
        changed_at INTEGER
    );
    CREATE TABLE IF NOT EXISTS e2ee_identity_changes (
        account_id TEXT NOT NULL,
        old_key BLOB NOT NULL,
        new_key BLOB NOT NULL,
        was_verified INTEGER NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS e2ee_devices (
        account_id TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        PRIMARY KEY (account_id, device_id)
    );
    CREATE TABLE IF NOT EXISTS e2ee_known_accounts (
        account_id TEXT PRIMARY KEY             -- device list loaded at least once
    );
    CREATE TABLE IF NOT EXISTS e2ee_group_keys (
        conv_id TEXT PRIMARY KEY,
        distribution_id TEXT NOT NULL,          -- own current sender key in this group
        created_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS e2ee_group_shared (
        conv_id TEXT NOT NULL,
        distribution_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        PRIMARY KEY (conv_id, distribution_id, account_id, device_id)
    );
    CREATE TABLE IF NOT EXISTS e2ee_pending (
        message_id TEXT PRIMARY KEY,            -- a group message waiting for its sender key
        sender TEXT NOT NULL,
        sender_device INTEGER NOT NULL,
        envelope BLOB NOT NULL,                 -- the Envelope frame, as received
        received_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS e2ee_pending_sender ON e2ee_pending (sender, sender_device);
    """,
    # 2: messages awaiting a sender key are keyed by (conversation, sender, message id): an
    # envelope with the same id from someone else or in another conversation cannot push the
    # real one out (the kept rows move over in _move_pending_v1)
    """
    ALTER TABLE e2ee_pending RENAME TO e2ee_pending_v1;
    DROP INDEX IF EXISTS e2ee_pending_sender;
    CREATE TABLE e2ee_pending (
        conv_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        sender_device INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        envelope BLOB NOT NULL,                 -- the Envelope frame, as received
        received_at INTEGER NOT NULL,
        PRIMARY KEY (conv_id, sender, message_id)
    );
    CREATE INDEX e2ee_pending_sender ON e2ee_pending (sender, sender_device);
    """,
)


_envelope_decoder = msgspec.msgpack.Decoder(Envelope)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class IdentityChange:
    """A contact's identity key changed (seen in a PreKey message or a bundle)."""

    account_id: str
    was_verified: bool
    at: int


@dataclass(frozen=True, slots=True)
class KnownIdentity:
    account_id: str
    identity_key: IdentityKey
    verified: bool
    #: the key changed after the user verified it: sending to this account stops
    blocked: bool
    #: when the key was last fetched from the server (ms; None: never, or before this was kept)
    checked_at: int | None = None


class KeyStore:
    """All crypto stores of one device, on the profile database's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        #: identity changes recorded since the caller last took them (see :meth:`take_changes`)
        self._changes: list[IdentityChange] = []
        #: read caches (every message looks these up); dropped on every write and rollback
        self._identities: dict[str, KnownIdentity | None] = {}
        self._devices: dict[str, list[int] | None] = {}
        #: Double Ratchet sessions as last loaded or stored (written through: the database
        #: holds what is here), so the messages of a burst deserialize their session once. The
        #: crypto code changes a loaded record in place before storing it, so any exception
        #: inside a transaction drops this cache (the record may be half changed, the row not).
        self._sessions: dict[tuple[str, int], SessionRecord | None] = {}
        #: sessions stored inside a transaction someone else opened → the row of
        #: ``temp.e2ee_written`` written with them: gone if that transaction rolled back
        self._unsettled: dict[tuple[str, int], int] = {}
        self._written = 0
        #: the connection's ``total_changes`` when the cache was last known whole: any other
        #: write since (a message stored, a raw statement) and the sessions are read again,
        #: once per burst of messages sealed
        self._seen = -1
        #: inside a transaction whose rollback calls :meth:`forget_cached` (:meth:`guarded`)
        self._guarded = False
        #: sessions advanced by encryption inside :meth:`guarded` and not written yet: written
        #: together when it ends, before its commit, and so before any ciphertext they made
        #: can leave (:meth:`sending`)
        self._dirty: dict[tuple[str, int], SessionRecord] = {}
        #: encrypting (:meth:`sending`): a session stored now may wait in ``_dirty``
        self._sending = False
        #: Kyber prekey records as loaded (their secret key expanded from its seed), by id: each
        #: PreKey message that starts a session needs one, and while the one-time ones are gone
        #: every such message names the last-resort key. Dropped when the row is written or
        #: deleted and with the other caches; never logged.
        self._kyber: dict[int, KyberPreKeyRecord] = {}
        #: one-time prekeys used up since the owner last looked (time to ask the server's count)
        self.consumed = 0
        self._migrate()

    def forget_cached(self) -> None:
        """Drop the read caches (a transaction that wrote through this store rolled back).
        Sessions waiting to be written stay: only encryption advanced them, and an advanced
        chain skips message keys at worst, where an older one would use a key twice."""
        self._identities.clear()
        self._devices.clear()
        self._sessions.clear()
        self._unsettled.clear()
        self._kyber.clear()

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def guarded(self) -> Iterator[None]:
        """The caller's open transaction either commits or, rolling back, calls
        :meth:`forget_cached`: sessions stored inside it need no rollback marker."""
        before, self._guarded = self._guarded, True
        try:
            yield
        finally:
            self._guarded = before
            if not before:
                self.write_sessions()

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Encryption: inside :meth:`guarded`, the sessions it stores are written once, when
        the guarded transaction ends (before it commits), not after each message. A burst of
        messages to one device then writes its session once."""
        before, self._sending = self._sending, True
        try:
            yield
        finally:
            self._sending = before

    def write_sessions(self) -> None:
        """Write the sessions :meth:`sending` left waiting; if that fails, they are dropped
        with the caches (what they encrypted must then not be sent)."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO e2ee_sessions VALUES (?, ?, ?)",
                [(*key, record.serialize()) for key, record in dirty.items()],
            )
        except BaseException:
            self.forget_cached()
            raise
        self._seen = self.db.total_changes

    def _migrate(self) -> None:
        _carry_legacy_version(self.db)
        migrate(self.db, STEPS, component=COMPONENT)
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS e2ee_written (n INTEGER PRIMARY KEY)")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in a transaction of its own, or inside the open one as a savepoint:
        either way it happens whole or not at all."""
        if not self._sending:  # a rollback of anything else must not take sessions back
            self.write_sessions()
        joined = self.db.in_transaction
        self.db.execute("SAVEPOINT keys" if joined else "BEGIN IMMEDIATE")
        recorded = len(self._changes)
        try:
            yield
        except BaseException:
            if joined:
                self.db.execute("ROLLBACK TO keys")
                self.db.execute("RELEASE keys")
            else:
                self.db.execute("ROLLBACK")
            # also the sessions: the crypto code may have changed a record it did not store
            self.forget_cached()
            # identity changes recorded inside the transaction did not happen
            del self._changes[recorded:]
            raise
        self.db.execute("RELEASE keys" if joined else "COMMIT")

    # ------------------------------------------------------------------ the local identity

    def has_identity(self) -> bool:
        return self.db.execute("SELECT 1 FROM e2ee_local").fetchone() is not None

    def set_identity(self, identity: IdentityKeyPair, registration_id: int | None = None) -> int:
        """Store the account's identity key pair and a new registration id for this device."""
        reg = registration_id or secrets.randbelow(16380) + 1
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO e2ee_local VALUES (1, ?, ?)", (identity.serialize(), reg)
            )
        return reg

    def get_identity_key_pair(self) -> IdentityKeyPair:
        row = self.db.execute("SELECT identity FROM e2ee_local").fetchone()
        if row is None:
            raise LookupError("this profile has no identity key yet")
        return IdentityKeyPair.deserialize(row[0])

    def get_local_registration_id(self) -> int:
        row = self.db.execute("SELECT registration_id FROM e2ee_local").fetchone()
        if row is None:
            raise LookupError("this profile has no identity key yet")
        return int(row[0])

    # ------------------------------------------------------------------ others' identities

    def save_identity(self, address: ProtocolAddress, identity: IdentityKey) -> bool:
        """Record ``identity`` for the account of ``address``; True if it replaced another."""
        return self.observe_identity(address.name, identity)

    def observe_identity(self, account_id: str, identity: IdentityKey) -> bool:
        """Record the identity key seen for ``account_id``. A different key than the known one
        is a change: kept in the history, reported by :meth:`take_changes`, and if the user had
        verified the old key, the account is blocked for sending. True on a change."""
        known = self.known_identity(account_id)
        if known is not None and known.identity_key == identity:
            return False
        key = identity.serialize()
        row = self.db.execute(
            "SELECT identity_key, verified FROM e2ee_identities WHERE account_id = ?",
            (account_id,),
        ).fetchone()
        at = now_ms()
        self._identities.pop(account_id, None)
        with self.transaction():
            if row is None:
                self.db.execute(
                    "INSERT INTO e2ee_identities (account_id, identity_key, first_seen)"
                    " VALUES (?, ?, ?)",
                    (account_id, key, at),
                )
                return False
            if bytes(row[0]) == key:
                return False
            was_verified = bool(row[1])
            self.db.execute(
                "UPDATE e2ee_identities SET identity_key = ?, verified = 0, blocked = ?,"
                " changed_at = ? WHERE account_id = ?",
                (key, int(was_verified), at, account_id),
            )
            self.db.execute(
                "INSERT INTO e2ee_identity_changes VALUES (?, ?, ?, ?, ?)",
                (account_id, bytes(row[0]), key, int(was_verified), at),
            )
        self._changes.append(IdentityChange(account_id, was_verified, at))
        return True

    def take_changes(self) -> list[IdentityChange]:
        """Identity changes recorded since the last call."""
        changes, self._changes = self._changes, []
        return changes

    def is_trusted_identity(
        self, address: ProtocolAddress, identity: IdentityKey, direction: Direction
    ) -> bool:
        """Receiving: always (a change is recorded when the message decrypts). Sending: the key
        must be the recorded one and the account must not be blocked by a verified change."""
        if direction is Direction.RECEIVING:
            return True
        known = self.known_identity(address.name)
        if known is None:
            return True
        return not known.blocked and known.identity_key == identity

    def get_identity(self, address: ProtocolAddress) -> IdentityKey | None:
        known = self.known_identity(address.name)
        return None if known is None else known.identity_key

    def known_identity(self, account_id: str) -> KnownIdentity | None:
        if account_id in self._identities:
            return self._identities[account_id]
        row = self.db.execute(
            "SELECT identity_key, verified, blocked, checked_at FROM e2ee_identities"
            " WHERE account_id = ?",
            (account_id,),
        ).fetchone()
        known = (
            None
            if row is None
            else KnownIdentity(
                account_id,
                IdentityKey.deserialize(bytes(row[0])),
                bool(row[1]),
                bool(row[2]),
                row[3],
            )
        )
        self._identities[account_id] = known
        return known

    def identity_checked(self, account_id: str, at: int | None = None) -> None:
        """The server just gave ``account_id``'s identity key (claimed bundles): note when."""
        self._identities.pop(account_id, None)
        with self.transaction():
            self.db.execute(
                "UPDATE e2ee_identities SET checked_at = ? WHERE account_id = ?",
                (now_ms() if at is None else at, account_id),
            )

    def set_verified(self, account_id: str, verified: bool) -> None:
        """The user compared safety numbers (or takes that back). Clears ``blocked``."""
        self._identities.pop(account_id, None)
        with self.transaction():
            self.db.execute(
                "UPDATE e2ee_identities SET verified = ?, blocked = 0 WHERE account_id = ?",
                (int(verified), account_id),
            )

    def identity_changes(self, account_id: str) -> list[IdentityChange]:
        """The recorded changes of ``account_id``'s identity key, oldest first."""
        return [
            IdentityChange(account_id, bool(row[0]), int(row[1]))
            for row in self.db.execute(
                "SELECT was_verified, at FROM e2ee_identity_changes WHERE account_id = ?"
                " ORDER BY at, rowid",
                (account_id,),
            )
        ]

    # ------------------------------------------------------------------ one-time prekeys

    def get_pre_key(self, pre_key_id: int) -> PreKeyRecord:
        row = self.db.execute(
            "SELECT record FROM e2ee_prekeys WHERE id = ?", (pre_key_id,)
        ).fetchone()
        if row is None:
            raise InvalidPreKeyIdError(f"no prekey with id {pre_key_id}")
        return PreKeyRecord.deserialize(bytes(row[0]))

    def save_pre_key(self, pre_key_id: int, record: PreKeyRecord) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO e2ee_prekeys VALUES (?, ?)",
                (pre_key_id, record.serialize()),
            )

    def remove_pre_key(self, pre_key_id: int) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM e2ee_prekeys WHERE id = ?", (pre_key_id,))
        self.consumed += 1

    def pre_key_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM e2ee_prekeys").fetchone()[0])

    # ------------------------------------------------------------------ signed prekeys

    def get_signed_pre_key(self, signed_pre_key_id: int) -> SignedPreKeyRecord:
        row = self.db.execute(
            "SELECT record FROM e2ee_signed_prekeys WHERE id = ?", (signed_pre_key_id,)
        ).fetchone()
        if row is None:
            raise InvalidSignedPreKeyIdError(f"no signed prekey with id {signed_pre_key_id}")
        return SignedPreKeyRecord.deserialize(bytes(row[0]))

    def save_signed_pre_key(self, signed_pre_key_id: int, record: SignedPreKeyRecord) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO e2ee_signed_prekeys (id, record, created_at)"
                " VALUES (?, ?, ?)",
                (signed_pre_key_id, record.serialize(), record.timestamp),
            )

    def current_signed_pre_key(self) -> tuple[int, int] | None:
        """(id, created_at ms) of the newest signed prekey."""
        row = self.db.execute(
            "SELECT id, created_at FROM e2ee_signed_prekeys WHERE retired_at IS NULL"
            " ORDER BY created_at DESC, id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def signed_pre_key_ids(self) -> list[int]:
        return [int(r[0]) for r in self.db.execute("SELECT id FROM e2ee_signed_prekeys")]

    # ------------------------------------------------------------------ Kyber prekeys

    def get_kyber_pre_key(self, kyber_pre_key_id: int) -> KyberPreKeyRecord:
        found = self._kyber.get(kyber_pre_key_id)
        if found is not None:
            return found
        row = self.db.execute(
            "SELECT record FROM e2ee_kyber_prekeys WHERE id = ?", (kyber_pre_key_id,)
        ).fetchone()
        if row is None:
            raise InvalidKyberPreKeyIdError(f"no Kyber prekey with id {kyber_pre_key_id}")
        record = KyberPreKeyRecord.deserialize(bytes(row[0]))
        if len(self._kyber) >= KYBER_PREKEYS_KEPT:
            self._kyber.clear()
        self._kyber[kyber_pre_key_id] = record
        return record

    def save_kyber_pre_key(self, kyber_pre_key_id: int, record: KyberPreKeyRecord) -> None:
        self._save_kyber(kyber_pre_key_id, record, last_resort=False)

    def _save_kyber(self, key_id: int, record: KyberPreKeyRecord, last_resort: bool) -> None:
        self._kyber.pop(key_id, None)
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO e2ee_kyber_prekeys (id, record, last_resort)"
                " VALUES (?, ?, ?)",
                (key_id, record.serialize(), int(last_resort)),
            )

    def mark_kyber_pre_key_used(self, kyber_pre_key_id: int) -> None:
        """A one-time Kyber prekey is deleted; the last-resort one stays (marked used)."""
        with self.transaction():
            deleted = self.db.execute(
                "DELETE FROM e2ee_kyber_prekeys WHERE id = ? AND last_resort = 0",
                (kyber_pre_key_id,),
            ).rowcount
            if deleted:
                self._kyber.pop(kyber_pre_key_id, None)
            self.db.execute(
                "UPDATE e2ee_kyber_prekeys SET used = 1 WHERE id = ?", (kyber_pre_key_id,)
            )

    def kyber_pre_key_count(self, last_resort: bool = False) -> int:
        row = self.db.execute(
            "SELECT count(*) FROM e2ee_kyber_prekeys WHERE last_resort = ?", (int(last_resort),)
        ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ sessions

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        key = (address.name, address.device_id)
        waiting = self._dirty.get(key)
        if waiting is not None:
            return waiting
        if self.db.total_changes != self._seen:
            self._sessions.clear()  # written behind the cache's back, maybe
            self._unsettled.clear()
        elif key in self._sessions and self._settled(key):
            return self._sessions[key]
        row = self.db.execute(
            "SELECT record FROM e2ee_sessions WHERE account_id = ? AND device_id = ?", key
        ).fetchone()
        record = None if row is None else SessionRecord.deserialize(bytes(row[0]))
        self._sessions[key] = record
        self._seen = self.db.total_changes
        return record

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        key = (address.name, address.device_id)
        if self._sending and self._guarded and (key in self._dirty or self._has_row(key)):
            self._dirty[key] = record  # written by write_sessions, before the commit
            return
        self._dirty.pop(key, None)
        if self.db.total_changes != self._seen:  # written behind the cache's back, maybe
            self._sessions.clear()
            self._unsettled.clear()
        self._sessions.pop(key, None)  # cached again once the row is written
        joined = self.db.in_transaction
        marked = joined and not self._guarded
        # one statement needs no savepoint of its own; with the marker it is three
        with self.transaction() if marked or not joined else contextlib.nullcontext():
            self.db.execute(
                "INSERT OR REPLACE INTO e2ee_sessions VALUES (?, ?, ?)",
                (*key, record.serialize()),
            )
            before = self._unsettled.pop(key, None)
            if before is not None:
                self.db.execute("DELETE FROM temp.e2ee_written WHERE n = ?", (before,))
            if marked:
                self._written += 1
                self.db.execute("INSERT INTO temp.e2ee_written VALUES (?)", (self._written,))
        if marked:
            self._unsettled[key] = self._written
        self._sessions[key] = record
        self._seen = self.db.total_changes

    def _has_row(self, key: tuple[str, int]) -> bool:
        """Whether the cache knows that the session ``key`` has its row (then writing it may
        wait: which devices have sessions is read from the rows)."""
        return (
            self.db.total_changes == self._seen
            and self._sessions.get(key) is not None
            and self._settled(key)
        )

    def _settled(self, key: tuple[str, int]) -> bool:
        """Whether the cached session ``key`` may be used: not stored inside a transaction
        that rolled back since (the cache is dropped if it was)."""
        token = self._unsettled.get(key)
        if token is None:
            return True
        if self.db.execute("SELECT 1 FROM temp.e2ee_written WHERE n = ?", (token,)).fetchone():
            if not self.db.in_transaction:  # committed: no need to ask again
                del self._unsettled[key]
                self.db.execute("DELETE FROM temp.e2ee_written WHERE n = ?", (token,))
                self._seen = self.db.total_changes
            return True
        del self._unsettled[key]
        self._sessions.pop(key, None)
        return False

    def has_session(self, address: ProtocolAddress) -> bool:
        record = self.load_session(address)
        return record is not None and record.has_current_state()

    def archive_session(self, address: ProtocolAddress) -> None:
        """Keep the current state as a previous one: the next message starts a new session."""
        record = self.load_session(address)
        if record is not None and record.has_current_state():
            record.archive_current_state()
            self.store_session(address, record)

    def delete_session(self, address: ProtocolAddress) -> None:
        self._dirty.pop((address.name, address.device_id), None)
        self._sessions.pop((address.name, address.device_id), None)
        self._unsettled.pop((address.name, address.device_id), None)
        with self.transaction():
            self.db.execute(
                "DELETE FROM e2ee_sessions WHERE account_id = ? AND device_id = ?",
                (address.name, address.device_id),
            )

    def session_devices(self, account_id: str) -> list[int]:
        return [
            int(r[0])
            for r in self.db.execute(
                "SELECT device_id FROM e2ee_sessions WHERE account_id = ? ORDER BY device_id",
                (account_id,),
            )
        ]

    # ------------------------------------------------------------------ sender keys

    def store_sender_key(
        self, sender: AddressLike, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO e2ee_sender_keys VALUES (?, ?, ?, ?)",
                (sender.name, sender.device_id, distribution_id.hex, record.serialize()),
            )

    def load_sender_key(
        self, sender: AddressLike, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        row = self.db.execute(
            "SELECT record FROM e2ee_sender_keys WHERE account_id = ? AND device_id = ?"
            " AND distribution_id = ?",
            (sender.name, sender.device_id, distribution_id.hex),
        ).fetchone()
        return None if row is None else SenderKeyRecord.deserialize(bytes(row[0]))

    def delete_sender_key(self, sender: AddressLike, distribution_id: uuid.UUID) -> None:
        with self.transaction():
            self.db.execute(
                "DELETE FROM e2ee_sender_keys WHERE account_id = ? AND device_id = ?"
                " AND distribution_id = ?",
                (sender.name, sender.device_id, distribution_id.hex),
            )

    # ------------------------------------------------------------------ devices of accounts

    def devices(self, account_id: str) -> list[int] | None:
        """The account's current device ids as last learnt; None if never learnt."""
        if account_id in self._devices:
            cached = self._devices[account_id]
            return None if cached is None else list(cached)
        known = self.db.execute(
            "SELECT 1 FROM e2ee_known_accounts WHERE account_id = ?", (account_id,)
        ).fetchone()
        devices = (
            None
            if known is None
            else [
                int(r[0])
                for r in self.db.execute(
                    "SELECT device_id FROM e2ee_devices WHERE account_id = ? ORDER BY device_id",
                    (account_id,),
                )
            ]
        )
        self._devices[account_id] = devices
        return None if devices is None else list(devices)

    def set_devices(self, account_id: str, device_ids: list[int]) -> list[int]:
        """Replace the account's device list; returns the devices that went away."""
        old = set(self.devices(account_id) or [])
        self._devices.pop(account_id, None)
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO e2ee_known_accounts VALUES (?)", (account_id,))
            self.db.execute("DELETE FROM e2ee_devices WHERE account_id = ?", (account_id,))
            self.db.executemany(
                "INSERT INTO e2ee_devices VALUES (?, ?)",
                [(account_id, device) for device in sorted(set(device_ids))],
            )
        return sorted(old - set(device_ids))

    # ------------------------------------------------------------------ own sender keys

    def group_key(self, conv_id: str) -> uuid.UUID | None:
        """Our current distribution id in ``conv_id``, if we have one."""
        row = self.db.execute(
            "SELECT distribution_id FROM e2ee_group_keys WHERE conv_id = ?", (conv_id,)
        ).fetchone()
        return None if row is None else uuid.UUID(row[0])

    def new_group_key(self, conv_id: str) -> uuid.UUID:
        distribution_id = uuid.uuid4()
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO e2ee_group_keys VALUES (?, ?, ?)",
                (conv_id, distribution_id.hex, now_ms()),
            )
            self.db.execute("DELETE FROM e2ee_group_shared WHERE conv_id = ?", (conv_id,))
        return distribution_id

    def drop_group_key(self, conv_id: str) -> None:
        """Rotation: the next group message creates a new sender key (new distribution id)."""
        with self.transaction():
            self.db.execute("DELETE FROM e2ee_group_keys WHERE conv_id = ?", (conv_id,))
            self.db.execute("DELETE FROM e2ee_group_shared WHERE conv_id = ?", (conv_id,))

    def shared_with(self, conv_id: str, distribution_id: uuid.UUID) -> set[tuple[str, int]]:
        return {
            (str(r[0]), int(r[1]))
            for r in self.db.execute(
                "SELECT account_id, device_id FROM e2ee_group_shared WHERE conv_id = ?"
                " AND distribution_id = ?",
                (conv_id, distribution_id.hex),
            )
        }

    def mark_shared(
        self, conv_id: str, distribution_id: uuid.UUID, devices: list[tuple[str, int]]
    ) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO e2ee_group_shared VALUES (?, ?, ?, ?)",
                [(conv_id, distribution_id.hex, acc, dev) for acc, dev in devices],
            )

    def forget_shared_device(self, account_id: str, device_id: int) -> None:
        """A device got a new session: it must get our sender keys again."""
        with self.transaction():
            self.db.execute(
                "DELETE FROM e2ee_group_shared WHERE account_id = ? AND device_id = ?",
                (account_id, device_id),
            )

    # ------------------------------------------------------------------ messages awaiting keys

    def keep_pending(
        self, conv_id: str, message_id: uuid.UUID, sender: str, device: int, envelope: bytes
    ) -> None:
        """Keep a group envelope until its sender key arrives; keyed by (conversation, sender,
        message id), so nobody else's envelope with the same id can take its place."""
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO e2ee_pending VALUES (?, ?, ?, ?, ?, ?)",
                (conv_id, sender, device, message_id.hex, envelope, now_ms()),
            )

    def pending_from(self, sender: str, device: int) -> list[tuple[uuid.UUID, bytes]]:
        """(message id, envelope) kept for ``sender``'s ``device``, oldest first."""
        return [
            (uuid.UUID(r[0]), bytes(r[1]))
            for r in self.db.execute(
                "SELECT message_id, envelope FROM e2ee_pending WHERE sender = ?"
                " AND sender_device = ? ORDER BY received_at, rowid",
                (sender, device),
            )
        ]

    def drop_pending(self, conv_id: str, sender: str, message_id: uuid.UUID) -> None:
        with self.transaction():
            self.db.execute(
                "DELETE FROM e2ee_pending WHERE conv_id = ? AND sender = ? AND message_id = ?",
                (conv_id, sender, message_id.hex),
            )

    # ------------------------------------------------------------------ key generation

    def _take_ids(self, name: str, count: int) -> list[int]:
        row = self.db.execute("SELECT next FROM e2ee_counters WHERE name = ?", (name,)).fetchone()
        start = int(row[0]) if row is not None else secrets.randbelow(_MAX_KEY_ID // 2) + 1
        ids = [(start + i - 1) % _MAX_KEY_ID + 1 for i in range(count)]
        self.db.execute(
            "INSERT OR REPLACE INTO e2ee_counters VALUES (?, ?)",
            (name, ids[-1] % _MAX_KEY_ID + 1),
        )
        return ids

    def initial_upload(self, now: int | None = None) -> wire.KeyUpload:
        """Everything a new device publishes: signed prekey, last-resort Kyber prekey and
        :data:`PREKEY_BATCH` one-time prekeys of each kind (all private halves stored)."""
        at = now_ms() if now is None else now
        identity = self.get_identity_key_pair()
        with self.transaction():
            signed = self._new_signed_pre_key(identity, at)
            (last_id,) = self._take_ids("kyber", 1)
            last = KyberPreKeyRecord.generate(last_id, identity, at)
            self._save_kyber(last_id, last, last_resort=True)
            prekeys, kyber = self._new_one_time(identity, at)
        return wire.KeyUpload(
            identity_key=identity.identity_key.serialize(),
            registration_id=self.get_local_registration_id(),
            signed_prekey=signed,
            kyber_last_resort=_kyber_wire(last),
            prekeys=prekeys,
            kyber_prekeys=kyber,
        )

    def maintenance_upload(
        self, counts: wire.KeyCounts, now: int | None = None
    ) -> wire.KeyUpload | None:
        """What to upload after the server reported ``counts``: a new batch of one-time prekeys
        when either kind fell below :data:`REFILL_BELOW`, a new signed prekey when the current
        one is older than 7 days; retired signed prekeys older than 30 days are deleted."""
        at = now_ms() if now is None else now
        identity = self.get_identity_key_pair()
        signed: wire.SignedPreKey | None = None
        prekeys: list[wire.OneTimePreKey] = []
        kyber: list[wire.KyberPreKey] = []
        with self.transaction():
            self.db.execute(
                "DELETE FROM e2ee_signed_prekeys WHERE retired_at IS NOT NULL AND retired_at < ?",
                (at - SIGNED_PREKEY_KEEP_MS,),
            )
            current = self.current_signed_pre_key()
            if (
                current is None
                or counts.signed_prekey_id != current[0]
                or at - current[1] >= SIGNED_PREKEY_ROTATE_MS
            ):
                signed = self._new_signed_pre_key(identity, at)
            if counts.prekeys < REFILL_BELOW or counts.kyber_prekeys < REFILL_BELOW:
                prekeys, kyber = self._new_one_time(identity, at)
        if signed is None and not prekeys:
            return None
        return wire.KeyUpload(
            identity_key=identity.identity_key.serialize(),
            registration_id=self.get_local_registration_id(),
            signed_prekey=signed,
            prekeys=prekeys,
            kyber_prekeys=kyber,
        )

    def _new_signed_pre_key(self, identity: IdentityKeyPair, at: int) -> wire.SignedPreKey:
        self.db.execute(
            "UPDATE e2ee_signed_prekeys SET retired_at = ? WHERE retired_at IS NULL", (at,)
        )
        (key_id,) = self._take_ids("signed", 1)
        record = SignedPreKeyRecord.generate(key_id, identity, at)
        self.db.execute(
            "INSERT OR REPLACE INTO e2ee_signed_prekeys (id, record, created_at) VALUES (?, ?, ?)",
            (key_id, record.serialize(), at),
        )
        return wire.SignedPreKey(
            id=key_id, key=record.public_key().serialize(), signature=record.signature
        )

    def _new_one_time(
        self, identity: IdentityKeyPair, at: int
    ) -> tuple[list[wire.OneTimePreKey], list[wire.KyberPreKey]]:
        prekeys: list[wire.OneTimePreKey] = []
        for key_id in self._take_ids("prekey", PREKEY_BATCH):
            record = PreKeyRecord.generate(key_id)
            self.save_pre_key(key_id, record)
            prekeys.append(wire.OneTimePreKey(id=key_id, key=record.public_key().serialize()))
        kyber: list[wire.KyberPreKey] = []
        for key_id in self._take_ids("kyber", PREKEY_BATCH):
            kyber_record = KyberPreKeyRecord.generate(key_id, identity, at)
            self._save_kyber(key_id, kyber_record, last_resort=False)
            kyber.append(_kyber_wire(kyber_record))
        return prekeys, kyber


def _kyber_wire(record: KyberPreKeyRecord) -> wire.KyberPreKey:
    return wire.KyberPreKey(
        id=record.id, key=record.public_key().serialize(), signature=record.signature
    )


def _move_pending_v1(db: sqlite3.Connection) -> None:
    """Migration 2: the kept envelopes get their conversation (from the frame itself)."""
    for statement in statements(SCHEMA[1]):
        db.execute(statement)
    rows = db.execute(
        "SELECT message_id, sender, sender_device, envelope, received_at"
        " FROM e2ee_pending_v1 ORDER BY received_at, rowid"
    ).fetchall()
    for message_id, sender, device, raw, at in rows:
        try:
            conv_id = _envelope_decoder.decode(bytes(raw)).conv
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # unreadable: it could never have been released anyway
        db.execute(
            "INSERT OR IGNORE INTO e2ee_pending VALUES (?, ?, ?, ?, ?, ?)",
            (conv_id, sender, device, message_id, raw, at),
        )
    db.execute("DROP TABLE e2ee_pending_v1")


#: The key store's migration steps (:func:`tidings.migrations.migrate`, component ``keystore``).
STEPS: tuple[Step, ...] = (
    SCHEMA[0],
    _move_pending_v1,
    # 3: when each contact's identity key was last fetched from the server (safety numbers
    # shown offline say how fresh they are)
    "ALTER TABLE e2ee_identities ADD COLUMN checked_at INTEGER",
)


def _carry_legacy_version(db: sqlite3.Connection) -> None:
    """Profiles written before the one migration runner kept the key store's version in a
    table of its own, ``e2ee_schema``: carry it into ``schema_versions`` once, then drop it."""
    legacy = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'e2ee_schema'"
    ).fetchone()
    if legacy is None:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT MAX(version) FROM e2ee_schema").fetchone()
        if row is not None and row[0] is not None and version(db, COMPONENT) == 0:
            db.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?)",
                (COMPONENT, int(row[0])),
            )
        db.execute("DROP TABLE e2ee_schema")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
