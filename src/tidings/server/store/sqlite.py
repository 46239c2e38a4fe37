"""The embedded :class:`~tidings.server.store.base.Store`: one SQLite file in WAL mode.

Writes never run on the event loop. They go to one writer thread that does **group commit**:
it takes every operation queued while the previous transaction ran and runs them together in
one transaction. A refused operation changes nothing and does not disturb its neighbours: most
are refused before they write anything; when one fails after writing, the transaction is rolled
back and the group runs again with each operation inside its own savepoint. Reads run on a
small pool of threads with their own connections (WAL lets them read while the writer writes).

``synchronous=NORMAL``: a committed transaction survives the process being killed; a power cut
may lose the last ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.resources
import logging
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from tidings.protocol import DeviceEnvelope, Envelope, ErrorCode, SystemEvent, Watermark, encode
from tidings.protocol.keys import (
    MAX_STORED_PREKEYS,
    DeviceBundle,
    KeyCounts,
    KeyUpload,
    KyberPreKey,
    OneTimePreKey,
    PreKeyBundles,
    SignedPreKey,
)
from tidings.server.store.base import (
    AccountRecord,
    Appended,
    ConversationRecord,
    DeviceQueued,
    DeviceRecord,
    LinkedDevice,
    MemberRecord,
    MembershipChange,
    NewConversation,
    NewDeviceLink,
    NewMessage,
    Refused,
    StaleDeviceList,
    WatermarkMove,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Schema scripts in order; script i brings the database to user_version i + 1.
MIGRATIONS = ("sqlite_v1.sql", "sqlite_v2.sql", "sqlite_v3.sql", "sqlite_v4.sql")
#: Most operations committed by one transaction.
MAX_GROUP = 1000

_ENVELOPE_COLUMNS = "conv_id, seq, id, sender, sender_device, ts, kind, payload, mentions"
#: the same, of the envelopes table aliased ``e``
_E_ENVELOPE_COLUMNS = ", ".join(f"e.{c}" for c in _ENVELOPE_COLUMNS.split(", "))
_mentions_decoder = msgspec.json.Decoder(list[str])
_DEVICE_ENVELOPE_COLUMNS = "dseq, id, sender, sender_device, ts, payload"
#: one_time_keys.kind
_CURVE, _KYBER = 0, 1


# --------------------------------------------------------------------------- connections


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every transaction is an explicit BEGIN.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns the version it had before."""
    (before,) = conn.execute("PRAGMA user_version").fetchone()
    if before > len(MIGRATIONS):
        raise RuntimeError(f"database schema {before} is newer than this server knows")
    for version in range(before + 1, len(MIGRATIONS) + 1):
        script = (
            importlib.resources.files("tidings.server.store")
            .joinpath(MIGRATIONS[version - 1])
            .read_text(encoding="utf-8")
        )
        # executescript commits whatever is open first, then runs the script as written.
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        log.info("database schema migrated to version %d", version)
    return int(before)


# --------------------------------------------------------------------------- the writer thread


class _Work(Protocol):
    def run(self, conn: sqlite3.Connection) -> None: ...
    def fail(self, exc: BaseException) -> None: ...
    def settle(self) -> None: ...


class _Job(Generic[T]):
    """One write operation and the future its caller awaits."""

    __slots__ = ("_fn", "_future", "_outcome")

    def __init__(self, fn: Callable[[sqlite3.Connection], T], future: asyncio.Future[T]) -> None:
        self._fn = fn
        self._future = future
        self._outcome: tuple[T] | BaseException | None = None

    def run(self, conn: sqlite3.Connection) -> None:
        self._outcome = (self._fn(conn),)

    def fail(self, exc: BaseException) -> None:
        self._outcome = exc

    def settle(self) -> None:
        """Hand the outcome to the awaiting coroutine (runs on the event loop)."""
        if self._future.done():  # the caller gave up waiting; the write happened anyway
            return
        if isinstance(self._outcome, tuple):
            self._future.set_result(self._outcome[0])
        elif self._outcome is not None:
            self._future.set_exception(self._outcome)


def _settle_all(jobs: Iterable[_Work]) -> None:
    for job in jobs:
        job.settle()


class _Writer(threading.Thread):
    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="tidings-sqlite-writer", daemon=True)
        self._path = path
        self._loop = loop
        self.jobs: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.open_error: BaseException | None = None
        #: write transactions run so far (each carries one or more operations)
        self.transactions = 0

    def run(self) -> None:
        try:
            conn = _connect(self._path, read_only=False)
            migrate(conn)
        except BaseException as exc:  # reported to open() through open_error
            self.open_error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            stopping = False
            while not stopping:
                first = self.jobs.get()
                if first is None:
                    break
                group = [first]
                while len(group) < MAX_GROUP:
                    try:
                        job = self.jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                        break
                    group.append(job)
                self._commit(conn, group)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, group: list[_Work]) -> None:
        self.transactions += 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            if not _run_plain(conn, group):
                # An operation failed after it had written something: undo the whole group
                # and run it again with a savepoint around each operation.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                _run_guarded(conn, group)
            if conn.in_transaction:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("write transaction failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in group:
                job.fail(exc)
        # One wake-up of the event loop per transaction, whatever the number of operations.
        self._loop.call_soon_threadsafe(_settle_all, group)


def _run_plain(conn: sqlite3.Connection, group: list[_Work]) -> bool:
    """Run the operations one after the other without savepoints (two statements fewer per
    operation). An operation refused before it changed a row is simply failed: SQLite undoes a
    failed statement by itself, so nothing of it remains. Returns False, leaving the
    transaction to be rolled back, as soon as an operation fails after changing rows (or the
    failure ended the transaction)."""
    for job in group:
        before = conn.total_changes
        try:
            job.run(conn)
        except Exception as exc:
            if conn.total_changes != before or not conn.in_transaction:
                return False
            job.fail(exc)
    return True


def _run_guarded(conn: sqlite3.Connection, group: list[_Work]) -> None:
    """Run the operations each inside its own savepoint, so a refused one changes nothing and
    does not disturb its neighbours."""
    if len(group) == 1:
        (job,) = group
        try:
            job.run(conn)
        except Exception as exc:
            job.fail(exc)
            conn.execute("ROLLBACK")
        return
    for job in group:
        conn.execute("SAVEPOINT op")
        try:
            job.run(conn)
        except Exception as exc:
            job.fail(exc)
            conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")


# --------------------------------------------------------------------------- the store


class SqliteStore:
    """:class:`~tidings.server.store.base.Store` on one SQLite database file."""

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self.path = path
        self._reader_count = readers
        self._writer: _Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_conns_lock = threading.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = _Writer(self.path, asyncio.get_running_loop())
        writer.start()
        await asyncio.to_thread(writer.ready.wait)
        if writer.open_error is not None:
            raise writer.open_error
        self._writer = writer
        self._readers = ThreadPoolExecutor(self._reader_count, thread_name_prefix="tidings-read")

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.jobs.put(None)
            await asyncio.to_thread(writer.join)
        readers, self._readers = self._readers, None
        if readers is not None:
            readers.shutdown(wait=True)
        with self._read_conns_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    @property
    def transactions(self) -> int:
        """Write transactions run so far; compare with operations to see group commit work."""
        return self._writer.transactions if self._writer is not None else 0

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.jobs.put(_Job(fn, future))
        return await future

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._in_read, fn)

    def _in_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, read_only=True)
            self._local.conn = conn
            with self._read_conns_lock:
                self._read_conns.append(conn)
        conn.execute("BEGIN")  # one snapshot for all the statements of fn
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ accounts and devices

    async def create_account(
        self,
        *,
        account_id: str,
        username: str,
        device_name: str,
        token_key: str,
        token_hash: bytes,
        now: int,
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM accounts WHERE username = ?", (username,)).fetchone():
                raise Refused(ErrorCode.USERNAME_TAKEN, f"username {username!r} is taken")
            conn.execute(
                "INSERT INTO accounts (id, username, created_at) VALUES (?, ?, ?)",
                (account_id, username, now),
            )
            conn.execute(
                "INSERT INTO devices (account_id, device_id, name, token_key, token_hash,"
                " created_at) VALUES (?, 1, ?, ?, ?, ?)",
                (account_id, device_name, token_key, token_hash, now),
            )

        await self._write(tx)

    async def device_by_token_key(self, token_key: str) -> DeviceRecord | None:
        def q(conn: sqlite3.Connection) -> DeviceRecord | None:
            row = conn.execute(
                "SELECT d.account_id, a.username, d.device_id, d.name, d.token_hash"
                " FROM devices d JOIN accounts a ON a.id = d.account_id WHERE d.token_key = ?",
                (token_key,),
            ).fetchone()
            return None if row is None else DeviceRecord(*row)

        return await self._read(q)

    async def accounts_by_username(self, usernames: Sequence[str]) -> dict[str, AccountRecord]:
        wanted = list(dict.fromkeys(usernames))

        def q(conn: sqlite3.Connection) -> dict[str, AccountRecord]:
            found: dict[str, AccountRecord] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))  # only placeholders go into the SQL
                sql = f"SELECT id, username, created_at FROM accounts WHERE username IN ({marks})"  # noqa: S608
                for row in conn.execute(sql, chunk):
                    found[row[1]] = AccountRecord(*row)
            return found

        return await self._read(q)

    # ------------------------------------------------------------------ conversations

    async def conversation(self, conv_id: str) -> ConversationRecord | None:
        return await self._read(lambda conn: _conversation(conn, conv_id))

    async def heads(self, account_id: str) -> dict[str, int]:
        def q(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT c.id, c.last_seq FROM members m JOIN conversations c ON c.id = m.conv_id"
                " WHERE m.account_id = ?",
                (account_id,),
            )
            return {conv: seq for conv, seq in rows}

        return await self._read(q)

    async def conversations_of(self, account_id: str) -> list[ConversationRecord]:
        def q(conn: sqlite3.Connection) -> list[ConversationRecord]:
            ids = conn.execute(
                "SELECT c.id FROM members m JOIN conversations c ON c.id = m.conv_id"
                " WHERE m.account_id = ? ORDER BY c.created_at, c.id",
                (account_id,),
            ).fetchall()
            records = (_conversation(conn, conv) for (conv,) in ids)
            return [r for r in records if r is not None]

        return await self._read(q)

    async def create_direct(self, new: NewConversation, peer: str) -> tuple[MembershipChange, bool]:
        key = "|".join(sorted((new.actor, peer)))

        def tx(conn: sqlite3.Connection) -> tuple[MembershipChange, bool]:
            row = conn.execute(
                "SELECT id FROM conversations WHERE direct_key = ?", (key,)
            ).fetchone()
            if row is not None:
                record = _must_conversation(conn, row[0])
                envelope = _envelope_at(conn, record.id, 1)
                return MembershipChange(record, envelope, ()), False
            conn.execute(
                "INSERT INTO conversations (id, kind, title, direct_key, last_seq, created_at)"
                " VALUES (?, 'direct', '', ?, 0, ?)",
                (new.conv_id, key, new.now),
            )
            for account in (new.actor, peer):
                _insert_member(conn, new.conv_id, account, "member", joined_seq=1)
            event = SystemEvent(action="created", actor=new.actor, members=[new.actor, peer])
            envelope = _append_system(
                conn, new.conv_id, event, new.event_id, new.actor_device, new.now
            )
            record = _must_conversation(conn, new.conv_id)
            return MembershipChange(record, envelope, (new.actor, peer)), True

        return await self._write(tx)

    async def create_group(
        self, new: NewConversation, title: str, members: Sequence[str], cap: int
    ) -> MembershipChange:
        others = [m for m in dict.fromkeys(members) if m != new.actor]
        if len(others) + 1 > cap:
            raise Refused(ErrorCode.GROUP_FULL, f"a group has at most {cap} members")

        def tx(conn: sqlite3.Connection) -> MembershipChange:
            conn.execute(
                "INSERT INTO conversations (id, kind, title, direct_key, last_seq, created_at)"
                " VALUES (?, 'group', ?, NULL, 0, ?)",
                (new.conv_id, title, new.now),
            )
            _insert_member(conn, new.conv_id, new.actor, "admin", joined_seq=1)
            for account in others:
                _insert_member(conn, new.conv_id, account, "member", joined_seq=1)
            everyone = [new.actor, *others]
            event = SystemEvent(action="created", actor=new.actor, members=everyone, title=title)
            envelope = _append_system(
                conn, new.conv_id, event, new.event_id, new.actor_device, new.now
            )
            record = _must_conversation(conn, new.conv_id)
            return MembershipChange(record, envelope, tuple(everyone))

        return await self._write(tx)

    async def add_members(
        self,
        conv_id: str,
        actor: str,
        accounts: Sequence[str],
        cap: int,
        event_id: uuid.UUID,
        actor_device: int,
        now: int,
    ) -> MembershipChange:
        adding = list(dict.fromkeys(accounts))

        def tx(conn: sqlite3.Connection) -> MembershipChange:
            record = _group_for(conn, conv_id, actor, admin=True)
            current = {m.account_id for m in record.members}
            if any(a in current for a in adding):
                raise Refused(ErrorCode.ALREADY_MEMBER, "already a member")
            if len(current) + len(adding) > cap:
                raise Refused(ErrorCode.GROUP_FULL, f"a group has at most {cap} members")
            seq = record.last_seq + 1
            for account in adding:
                _insert_member(conn, conv_id, account, "member", joined_seq=seq)
            event = SystemEvent(action="member_added", actor=actor, members=adding)
            envelope = _append_system(conn, conv_id, event, event_id, actor_device, now)
            after = _must_conversation(conn, conv_id)
            return MembershipChange(after, envelope, _member_ids(after))

        return await self._write(tx)

    async def remove_member(
        self,
        conv_id: str,
        actor: str,
        account: str,
        event_id: uuid.UUID,
        actor_device: int,
        now: int,
    ) -> MembershipChange:
        if account == actor:
            return await self.leave(conv_id, actor, event_id, actor_device, now)

        def tx(conn: sqlite3.Connection) -> MembershipChange:
            record = _group_for(conn, conv_id, actor, admin=True)
            if record.member(account) is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such member")
            event = SystemEvent(action="member_removed", actor=actor, members=[account])
            # Written while the member still belongs, so its devices get this envelope too.
            envelope = _append_system(conn, conv_id, event, event_id, actor_device, now)
            conn.execute(
                "DELETE FROM members WHERE conv_id = ? AND account_id = ?", (conv_id, account)
            )
            after = _must_conversation(conn, conv_id)
            return MembershipChange(after, envelope, (*_member_ids(after), account))

        return await self._write(tx)

    async def leave(
        self, conv_id: str, account: str, event_id: uuid.UUID, device: int, now: int
    ) -> MembershipChange:
        def tx(conn: sqlite3.Connection) -> MembershipChange:
            _group_for(conn, conv_id, account, admin=False)
            event = SystemEvent(action="member_left", actor=account, members=[account])
            envelope = _append_system(conn, conv_id, event, event_id, device, now)
            conn.execute(
                "DELETE FROM members WHERE conv_id = ? AND account_id = ?", (conv_id, account)
            )
            admins = conn.execute(
                "SELECT 1 FROM members WHERE conv_id = ? AND role = 'admin' LIMIT 1", (conv_id,)
            ).fetchone()
            if admins is None:
                conn.execute(
                    "UPDATE members SET role = 'admin' WHERE rowid = (SELECT rowid FROM members"
                    " WHERE conv_id = ? ORDER BY joined_seq, rowid LIMIT 1)",
                    (conv_id,),
                )
            after = _must_conversation(conn, conv_id)
            return MembershipChange(after, envelope, (*_member_ids(after), account))

        return await self._write(tx)

    # ------------------------------------------------------------------ messages

    async def append(self, message: NewMessage) -> Appended:
        return await self._write(lambda conn: _append(conn, message))

    async def envelopes(
        self, conv_id: str, after: int, limit: int, device: tuple[str, int] | None = None
    ) -> list[Envelope]:
        account_id, device_id = device if device is not None else ("", 0)

        def q(conn: sqlite3.Connection) -> list[Envelope]:
            rows = conn.execute(
                f"SELECT {_E_ENVELOPE_COLUMNS}, p.payload FROM envelopes e"  # noqa: S608  # constant column list
                " LEFT JOIN pending p ON p.account_id = ? AND p.device_id = ?"
                " AND p.conv_id = e.conv_id AND p.seq = e.seq"
                " WHERE e.conv_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
                (account_id, device_id, conv_id, after, limit),
            )
            return [_envelope(row) for row in rows]

        return await self._read(q)

    async def pending(
        self, account_id: str, device_id: int, after: tuple[str, int], limit: int
    ) -> list[Envelope]:
        def q(conn: sqlite3.Connection) -> list[Envelope]:
            rows = conn.execute(
                f"SELECT {_E_ENVELOPE_COLUMNS}, p.payload FROM pending p"  # noqa: S608  # constant column list
                " JOIN envelopes e ON e.conv_id = p.conv_id AND e.seq = p.seq"
                " WHERE p.account_id = ? AND p.device_id = ? AND (p.conv_id, p.seq) > (?, ?)"
                " ORDER BY p.conv_id, p.seq LIMIT ?",
                (account_id, device_id, after[0], after[1], limit),
            )
            return [_envelope(row) for row in rows]

        return await self._read(q)

    async def purge_pending(self, older_than: int) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            purged = conn.execute("DELETE FROM pending WHERE queued_at < ?", (older_than,)).rowcount
            purged += conn.execute("DELETE FROM device_queue WHERE ts < ?", (older_than,)).rowcount
            conn.execute("DELETE FROM device_sends WHERE ts < ?", (older_than,))
            return purged

        return await self._write(tx)

    # ------------------------------------------------------------------ receipts

    async def ack(
        self, account_id: str, device_id: int, upto: Mapping[str, int], now: int
    ) -> list[WatermarkMove]:
        items = list(upto.items())

        def tx(conn: sqlite3.Connection) -> list[WatermarkMove]:
            moves: list[WatermarkMove] = []
            for conv_id, seq in items:
                conn.execute(
                    "DELETE FROM pending WHERE account_id = ? AND device_id = ? AND conv_id = ?"
                    " AND seq <= ?",
                    (account_id, device_id, conv_id, seq),
                )
                move = _raise_watermarks(conn, conv_id, account_id, delivered=seq, read=0, now=now)
                if move is not None:
                    moves.append(move)
            return moves

        return await self._write(tx)

    async def mark_read(
        self, account_id: str, conv_id: str, seq: int, now: int
    ) -> WatermarkMove | None:
        def tx(conn: sqlite3.Connection) -> WatermarkMove | None:
            _require_member(conn, conv_id, account_id)
            return _raise_watermarks(conn, conv_id, account_id, delivered=seq, read=seq, now=now)

        return await self._write(tx)

    async def watermarks(self, conv_id: str) -> list[Watermark]:
        def q(conn: sqlite3.Connection) -> list[Watermark]:
            rows = conn.execute(
                "SELECT conv_id, account_id, delivered, read FROM members WHERE conv_id = ?"
                " ORDER BY joined_seq, rowid",
                (conv_id,),
            )
            return [Watermark(*row) for row in rows]

        return await self._read(q)

    async def welcome_watermarks(
        self, account_id: str, device_id: int, now: int
    ) -> list[Watermark]:
        def tx(conn: sqlite3.Connection) -> list[Watermark]:
            key = (account_id, device_id)
            row = conn.execute(
                "SELECT welcomed_at FROM devices WHERE account_id = ? AND device_id = ?", key
            ).fetchone()
            since = 0 if row is None else row[0]
            conn.execute(
                "UPDATE devices SET welcomed_at = ? WHERE account_id = ? AND device_id = ?",
                (now, *key),
            )
            # In conversations where the account has sent something: every other member's
            # marks if one of them has not read it all yet, and any marks that moved since
            # this device's previous Welcome (it may have missed the Receipt).
            rows = conn.execute(
                "SELECT w.conv_id, w.account_id, w.delivered, w.read FROM members me"
                " JOIN members w ON w.conv_id = me.conv_id AND w.account_id != me.account_id"
                " WHERE me.account_id = ? AND me.last_sent > 0 AND (w.marks_at >= ? OR EXISTS ("
                "   SELECT 1 FROM members o WHERE o.conv_id = me.conv_id"
                "   AND o.account_id != me.account_id AND o.read < me.last_sent))"
                " ORDER BY w.conv_id, w.joined_seq, w.rowid",
                (account_id, since),
            )
            return [Watermark(*r) for r in rows]

        return await self._write(tx)

    # ------------------------------------------------------------------ end-to-end encryption

    async def upload_keys(
        self,
        account_id: str,
        device_id: int,
        upload: KeyUpload,
        now: int,
        *,
        dropped: list[int] | None = None,
    ) -> KeyCounts:
        def tx(conn: sqlite3.Connection) -> KeyCounts:
            removed = _upload_keys(conn, account_id, device_id, upload, now)
            if dropped is not None:
                dropped.extend(removed)
            return _key_counts(conn, account_id, device_id)

        return await self._write(tx)

    async def remove_device(self, account_id: str, device_id: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            if not conn.execute(
                "SELECT 1 FROM devices WHERE account_id = ? AND device_id = ?",
                (account_id, device_id),
            ).fetchone():
                return False
            _drop_device(conn, account_id, device_id)
            return True

        return await self._write(tx)

    async def key_counts(self, account_id: str, device_id: int) -> KeyCounts:
        return await self._read(lambda conn: _key_counts(conn, account_id, device_id))

    async def claim_keys(
        self, requester: tuple[str, int], wanted: Mapping[str, Sequence[int]]
    ) -> list[PreKeyBundles]:
        items = [(account, list(devices)) for account, devices in wanted.items()]

        def tx(conn: sqlite3.Connection) -> list[PreKeyBundles]:
            bundles = (_claim(conn, requester, account, devices) for account, devices in items)
            return [b for b in bundles if b is not None]

        return await self._write(tx)

    async def device_map(self, conv_id: str) -> dict[str, list[int]]:
        return await self._read(lambda conn: _device_map(conn, conv_id))

    async def queue_to_devices(
        self,
        sender: tuple[str, int],
        msg_id: uuid.UUID,
        messages: Sequence[tuple[str, tuple[str, int], bytes]],
        now: int,
    ) -> DeviceQueued:
        return await self._write(
            lambda conn: _queue_to_devices(conn, sender, msg_id, messages, now)
        )

    async def device_queue(
        self, account_id: str, device_id: int, after: int, limit: int
    ) -> list[DeviceEnvelope]:
        def q(conn: sqlite3.Connection) -> list[DeviceEnvelope]:
            rows = conn.execute(
                f"SELECT {_DEVICE_ENVELOPE_COLUMNS} FROM device_queue"  # noqa: S608  # constant column list
                " WHERE account_id = ? AND device_id = ? AND dseq > ? ORDER BY dseq LIMIT ?",
                (account_id, device_id, after, limit),
            )
            return [_device_envelope(row) for row in rows]

        return await self._read(q)

    async def ack_device_queue(self, account_id: str, device_id: int, upto: int) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM device_queue WHERE account_id = ? AND device_id = ? AND dseq <= ?",
                (account_id, device_id, upto),
            ).rowcount

        return await self._write(tx)

    async def create_provisioning(
        self, provisioning_id: str, secret_hash: bytes, ephemeral_key: bytes, now: int, ttl: int
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO provisioning (id, secret_hash, ephemeral_key, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (provisioning_id, secret_hash, ephemeral_key, now, now + ttl),
            )

        await self._write(tx)

    async def approve_provisioning(self, link: NewDeviceLink) -> int:
        return await self._write(lambda conn: _approve(conn, link))

    async def fetch_provisioning(
        self, provisioning_id: str, secret_hash: bytes, token_key: str, token_hash: bytes, now: int
    ) -> LinkedDevice:
        def tx(conn: sqlite3.Connection) -> LinkedDevice:
            row = conn.execute(
                "SELECT p.secret_hash, p.expires_at, p.account_id, p.device_id, p.sealed,"
                " a.username FROM provisioning p LEFT JOIN accounts a ON a.id = p.account_id"
                " WHERE p.id = ?",
                (provisioning_id,),
            ).fetchone()
            if row is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such provisioning request")
            stored_hash, expires_at, account_id, device_id, sealed, username = row
            if not hmac.compare_digest(stored_hash, secret_hash):
                raise Refused(ErrorCode.UNAUTHORIZED, "wrong provisioning secret")
            if expires_at <= now:
                raise Refused(ErrorCode.EXPIRED, "the provisioning request expired")
            if account_id is None:
                raise Refused(ErrorCode.PENDING, "not approved yet")
            conn.execute(
                "UPDATE devices SET token_key = ?, token_hash = ? WHERE account_id = ?"
                " AND device_id = ?",
                (token_key, token_hash, account_id, device_id),
            )
            conn.execute("DELETE FROM provisioning WHERE id = ?", (provisioning_id,))
            return LinkedDevice(account_id, username, device_id, sealed)

        return await self._write(tx)

    async def purge_provisioning(self, now: int) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            expired = conn.execute(
                "DELETE FROM provisioning WHERE expires_at <= ? RETURNING account_id, device_id",
                (now,),
            ).fetchall()
            for account_id, device_id in expired:
                if account_id is not None:
                    _drop_device(conn, account_id, device_id)
            return len(expired)

        return await self._write(tx)


# --------------------------------------------------------------------------- transactions
# Functions below run on the writer thread (or a reader) inside a transaction.


def _envelope(row: tuple[Any, ...]) -> Envelope:  # sqlite3 rows are untyped
    conv, seq, raw_id, sender, sender_device, ts, kind, payload, mentions, *own = row
    return Envelope(
        conv=conv,
        seq=seq,
        id=uuid.UUID(bytes=raw_id),
        sender=sender,
        sender_device=sender_device,
        ts=ts,
        payload=payload,
        kind="system" if kind == "system" else "msg",
        mentions=_mentions_decoder.decode(mentions) if mentions else [],
        device_payload=own[0] if own and own[0] is not None else b"",
    )


def _envelope_at(conn: sqlite3.Connection, conv_id: str, seq: int) -> Envelope:
    row = conn.execute(
        f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes WHERE conv_id = ? AND seq = ?",  # noqa: S608  # constant column list
        (conv_id, seq),
    ).fetchone()
    if row is None:
        raise LookupError(f"envelope {conv_id}/{seq} missing")
    return _envelope(row)


def _conversation(conn: sqlite3.Connection, conv_id: str) -> ConversationRecord | None:
    row = conn.execute(
        "SELECT id, kind, title, last_seq, created_at FROM conversations WHERE id = ?",
        (conv_id,),
    ).fetchone()
    if row is None:
        return None
    members = tuple(
        MemberRecord(account, username, "admin" if role == "admin" else "member", *rest)
        for account, username, role, *rest in conn.execute(
            "SELECT m.account_id, a.username, m.role, m.joined_seq, m.delivered, m.read"
            " FROM members m JOIN accounts a ON a.id = m.account_id WHERE m.conv_id = ?"
            " ORDER BY m.joined_seq, m.rowid",
            (conv_id,),
        )
    )
    conv, kind, title, last_seq, created_at = row
    return ConversationRecord(
        id=conv,
        kind="group" if kind == "group" else "direct",
        title=title,
        last_seq=last_seq,
        created_at=created_at,
        members=members,
    )


def _must_conversation(conn: sqlite3.Connection, conv_id: str) -> ConversationRecord:
    record = _conversation(conn, conv_id)
    if record is None:
        raise LookupError(f"conversation {conv_id} missing")
    return record


def _member_ids(record: ConversationRecord) -> tuple[str, ...]:
    return tuple(m.account_id for m in record.members)


def _require_member(conn: sqlite3.Connection, conv_id: str, account: str) -> None:
    """Raise unless ``account`` is a member: NOT_MEMBER for an existing conversation,
    NOT_FOUND otherwise."""
    if conn.execute(
        "SELECT 1 FROM members WHERE conv_id = ? AND account_id = ?", (conv_id, account)
    ).fetchone():
        return
    if conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conv_id,)).fetchone() is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
    raise Refused(ErrorCode.NOT_MEMBER, "not a member of this conversation")


def _group_for(
    conn: sqlite3.Connection, conv_id: str, actor: str, *, admin: bool
) -> ConversationRecord:
    """The group ``actor`` acts on, after checking it exists, is a group, and ``actor`` is a
    member (and an admin, if ``admin``)."""
    record = _conversation(conn, conv_id)
    if record is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
    if record.kind != "group":
        raise Refused(ErrorCode.NOT_A_GROUP, "not a group")
    me = record.member(actor)
    if me is None:
        raise Refused(ErrorCode.NOT_MEMBER, "not a member of this group")
    if admin and me.role != "admin":
        raise Refused(ErrorCode.FORBIDDEN, "only admins can do this")
    return record


def _insert_member(
    conn: sqlite3.Connection, conv_id: str, account: str, role: str, *, joined_seq: int
) -> None:
    # A member has nothing to receive or read from before it joined.
    conn.execute(
        "INSERT INTO members (conv_id, account_id, role, joined_seq, delivered, read)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (conv_id, account, role, joined_seq, joined_seq - 1, joined_seq - 1),
    )


def _next_seq(conn: sqlite3.Connection, conv_id: str) -> int:
    """Take the conversation's next seq. Raises NOT_FOUND if there is no such conversation."""
    row = conn.execute(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
        (conv_id,),
    ).fetchone()
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
    return int(row[0])


def _store_envelope(
    conn: sqlite3.Connection, envelope: Envelope, *, skip_device: tuple[str, int] | None
) -> set[str]:
    """Insert the envelope and queue it for every device of every current member (except
    ``skip_device``). Returns the accounts it was queued for."""
    conn.execute(
        f"INSERT INTO envelopes ({_ENVELOPE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608  # constant column list
        (
            envelope.conv,
            envelope.seq,
            envelope.id.bytes,
            envelope.sender,
            envelope.sender_device,
            envelope.ts,
            envelope.kind,
            envelope.payload,
            msgspec.json.encode(envelope.mentions).decode() if envelope.mentions else None,
        ),
    )
    skip_account, skip_id = skip_device if skip_device is not None else ("", 0)
    rows = conn.execute(
        "INSERT INTO pending (account_id, device_id, conv_id, seq, queued_at)"
        " SELECT d.account_id, d.device_id, ?, ?, ? FROM members m"
        " JOIN devices d ON d.account_id = m.account_id"
        " WHERE m.conv_id = ? AND NOT (d.account_id = ? AND d.device_id = ?)"
        " RETURNING account_id",
        (envelope.conv, envelope.seq, envelope.ts, envelope.conv, skip_account, skip_id),
    )
    return {account for (account,) in rows}


def _append_system(
    conn: sqlite3.Connection,
    conv_id: str,
    event: SystemEvent,
    event_id: uuid.UUID,
    actor_device: int,
    now: int,
) -> Envelope:
    """Write a system envelope for every device of every current member, the actor's device
    included (it learns of the change through the REST answer, but its stream needs it too)."""
    envelope = Envelope(
        conv=conv_id,
        seq=_next_seq(conn, conv_id),
        id=event_id,
        sender=event.actor,
        sender_device=actor_device,
        ts=now,
        payload=encode(event),
        kind="system",
    )
    _store_envelope(conn, envelope, skip_device=None)
    return envelope


def _append(conn: sqlite3.Connection, m: NewMessage) -> Appended:
    original = conn.execute(
        "SELECT sender, conv_id, seq FROM envelopes WHERE id = ?", (m.id.bytes,)
    ).fetchone()
    if original is not None:
        if original[0] != m.sender:
            # Someone else's id: accepting it would let a member shadow another's message.
            raise Refused(ErrorCode.CONFLICT, "this message id is already taken")
        return Appended(_envelope_at(conn, original[1], original[2]), (), duplicate=True)
    if m.device_payloads or m.devices_digest:
        # Membership first: a non-member must not learn anyone's devices from StaleDevices.
        _require_member(conn, m.conv, m.sender)
        _check_devices(conn, m)
    # Membership first, and without a trace if it fails: a refused Send writes nothing, so the
    # writer never has to roll back and rerun its group for one (the usual refusal).
    if not conn.execute(
        "UPDATE members SET last_sent = (SELECT last_seq + 1 FROM conversations WHERE id = ?)"
        " WHERE conv_id = ? AND account_id = ?",
        (m.conv, m.conv, m.sender),
    ).rowcount:
        _require_member(conn, m.conv, m.sender)  # raises NOT_FOUND or NOT_MEMBER
    seq = _next_seq(conn, m.conv)  # the seq last_sent was just set to
    envelope = Envelope(
        conv=m.conv,
        seq=seq,
        id=m.id,
        sender=m.sender,
        sender_device=m.sender_device,
        ts=m.ts,
        payload=m.payload,
        mentions=list(m.mentions),
    )
    recipients = _store_envelope(conn, envelope, skip_device=(m.sender, m.sender_device))
    if m.device_payloads:
        conn.executemany(
            "UPDATE pending SET payload = ? WHERE account_id = ? AND device_id = ?"
            " AND conv_id = ? AND seq = ?",
            [
                (payload, account, device, m.conv, seq)
                for (account, device), payload in m.device_payloads
            ],
        )
    return Appended(envelope, tuple(recipients), duplicate=False)


def _device_map(conn: sqlite3.Connection, conv_id: str) -> dict[str, list[int]]:
    """Every member → its devices that have uploaded keys, in id order."""
    devices: dict[str, list[int]] = {}
    for account, device in conn.execute(
        "SELECT m.account_id, k.device_id FROM members m"
        " LEFT JOIN device_keys k ON k.account_id = m.account_id"
        " WHERE m.conv_id = ? ORDER BY m.joined_seq, m.rowid, k.device_id",
        (conv_id,),
    ):
        ids = devices.setdefault(account, [])
        if device is not None:
            ids.append(device)
    return devices


def devices_digest(addresses: Iterable[str]) -> bytes:
    """SHA-256 of the sorted, newline-joined device addresses (docs/e2ee.md)."""
    return hashlib.sha256("\n".join(sorted(addresses)).encode()).digest()


def _check_devices(conn: sqlite3.Connection, m: NewMessage) -> None:
    """Raise StaleDeviceList unless the Send covers exactly the recipient devices."""
    kind_row = conn.execute("SELECT kind FROM conversations WHERE id = ?", (m.conv,)).fetchone()
    if kind_row is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
    devices = _device_map(conn, m.conv)
    me = f"{m.sender}:{m.sender_device}"
    current = {f"{a}:{d}" for a, ids in devices.items() for d in ids} - {me}
    if kind_row[0] == "direct":
        if not m.device_payloads:
            raise Refused(ErrorCode.BAD_FRAME, "a direct conversation takes device_payloads")
        given = {f"{a}:{d}" for (a, d), _ in m.device_payloads}
        if given != current:
            raise StaleDeviceList(sorted(current - given), sorted(given - current), devices)
        return
    if m.device_payloads:
        raise Refused(ErrorCode.BAD_FRAME, "device_payloads are for direct conversations")
    if not hmac.compare_digest(devices_digest(current), m.devices_digest):
        raise StaleDeviceList([], [], devices)


def _raise_watermarks(
    conn: sqlite3.Connection, conv_id: str, account: str, *, delivered: int, read: int, now: int
) -> WatermarkMove | None:
    """Raise a member's watermarks to at least the given values (capped at the conversation's
    head; delivered never below read). ``None`` if the account is not a member or nothing
    moved."""
    row = conn.execute(
        "SELECT m.delivered, m.read, c.last_seq FROM members m"
        " JOIN conversations c ON c.id = m.conv_id WHERE m.conv_id = ? AND m.account_id = ?",
        (conv_id, account),
    ).fetchone()
    if row is None:
        return None
    old_delivered, old_read, head = row
    new_read = max(old_read, min(read, head))
    new_delivered = max(old_delivered, min(delivered, head), new_read)
    if new_delivered == old_delivered and new_read == old_read:
        return None
    conn.execute(
        "UPDATE members SET delivered = ?, read = ?, marks_at = ?"
        " WHERE conv_id = ? AND account_id = ?",
        (new_delivered, new_read, now, conv_id, account),
    )
    # Whoever has messages between the old and the new marks hears about it.
    low = old_read if new_read != old_read else old_delivered
    high = new_delivered if new_delivered != old_delivered else new_read
    senders = tuple(
        sender
        for (sender,) in conn.execute(
            "SELECT DISTINCT sender FROM envelopes WHERE conv_id = ? AND seq > ? AND seq <= ?"
            " AND kind = 'msg' AND sender != ?",
            (conv_id, low, high, account),
        )
    )
    return WatermarkMove(conv_id, account, new_delivered, new_read, senders)


# --------------------------------------------------------------------------- keys and devices


def _upload_keys(
    conn: sqlite3.Connection, account_id: str, device_id: int, upload: KeyUpload, now: int
) -> list[int]:
    """Store the upload; returns the ids of the other devices a new identity removed."""
    row = conn.execute("SELECT identity_key FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such account")
    current: bytes | None = row[0]
    removed: list[int] = []
    if current != upload.identity_key:
        if current is not None and not upload.replace_identity:
            raise Refused(ErrorCode.CONFLICT, "the identity key differs from the account's")
        if current is not None:
            # A new identity: key material signed by the old one is worthless, on every device,
            # and the other devices (which hold the old identity) are removed entirely.
            removed = [
                other
                for (other,) in conn.execute(
                    "SELECT device_id FROM devices WHERE account_id = ? AND device_id != ?",
                    (account_id, device_id),
                )
            ]
            for other in removed:
                _drop_device(conn, account_id, other)
            conn.execute("DELETE FROM one_time_keys WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM device_keys WHERE account_id = ?", (account_id,))
        conn.execute(
            "UPDATE accounts SET identity_key = ? WHERE id = ?", (upload.identity_key, account_id)
        )
    key = (account_id, device_id)
    signed, kyber = upload.signed_prekey, upload.kyber_last_resort
    if conn.execute(
        "SELECT 1 FROM device_keys WHERE account_id = ? AND device_id = ?", key
    ).fetchone():
        conn.execute(
            "UPDATE device_keys SET registration_id = ? WHERE account_id = ? AND device_id = ?",
            (upload.registration_id, *key),
        )
        if signed is not None:
            conn.execute(
                "UPDATE device_keys SET signed_prekey_id = ?, signed_prekey = ?,"
                " signed_prekey_sig = ?, signed_prekey_at = ? WHERE account_id = ?"
                " AND device_id = ?",
                (signed.id, signed.key, signed.signature, now, *key),
            )
        if kyber is not None:
            conn.execute(
                "UPDATE device_keys SET kyber_id = ?, kyber_key = ?, kyber_sig = ?"
                " WHERE account_id = ? AND device_id = ?",
                (kyber.id, kyber.key, kyber.signature, *key),
            )
    else:
        if signed is None or kyber is None:
            raise Refused(
                ErrorCode.BAD_FRAME,
                "a device's first upload needs signed_prekey and kyber_last_resort",
            )
        conn.execute(
            "INSERT INTO device_keys (account_id, device_id, registration_id, signed_prekey_id,"
            " signed_prekey, signed_prekey_sig, signed_prekey_at, kyber_id, kyber_key, kyber_sig)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *key,
                upload.registration_id,
                signed.id,
                signed.key,
                signed.signature,
                now,
                kyber.id,
                kyber.key,
                kyber.signature,
            ),
        )
    rows: list[tuple[str, int, int, int, bytes, bytes | None]]
    rows = [(*key, _CURVE, p.id, p.key, None) for p in upload.prekeys]
    rows += [(*key, _KYBER, p.id, p.key, p.signature) for p in upload.kyber_prekeys]
    if rows:
        conn.executemany(
            "INSERT INTO one_time_keys (account_id, device_id, kind, key_id, key, signature)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, device_id, kind, key_id)"
            " DO UPDATE SET key = excluded.key, signature = excluded.signature",
            rows,
        )
        # Keep the newest MAX_STORED_PREKEYS of each kind.
        for kind in (_CURVE, _KYBER):
            conn.execute(
                "DELETE FROM one_time_keys WHERE rowid IN (SELECT rowid FROM one_time_keys"
                " WHERE account_id = ? AND device_id = ? AND kind = ? ORDER BY rowid DESC"
                " LIMIT -1 OFFSET ?)",
                (*key, kind, MAX_STORED_PREKEYS),
            )
    return removed


def _key_counts(conn: sqlite3.Connection, account_id: str, device_id: int) -> KeyCounts:
    key = (account_id, device_id)
    counts = dict(
        conn.execute(
            "SELECT kind, count(*) FROM one_time_keys WHERE account_id = ? AND device_id = ?"
            " GROUP BY kind",
            key,
        ).fetchall()
    )
    row = conn.execute(
        "SELECT signed_prekey_id, signed_prekey_at FROM device_keys WHERE account_id = ?"
        " AND device_id = ?",
        key,
    ).fetchone()
    signed_id, signed_at = row if row is not None else (None, None)
    return KeyCounts(
        prekeys=counts.get(_CURVE, 0),
        kyber_prekeys=counts.get(_KYBER, 0),
        signed_prekey_id=signed_id,
        signed_prekey_uploaded_at=signed_at,
    )


def _take_one_time_key(
    conn: sqlite3.Connection, account_id: str, device_id: int, kind: int
) -> tuple[int, bytes, bytes | None] | None:
    """Delete and return the device's oldest one-time key of ``kind`` (one statement, inside
    the writer's transaction: no other claim can see it afterwards)."""
    rows = conn.execute(
        "DELETE FROM one_time_keys WHERE rowid = (SELECT rowid FROM one_time_keys"
        " WHERE account_id = ? AND device_id = ? AND kind = ? ORDER BY rowid LIMIT 1)"
        " RETURNING key_id, key, signature",
        (account_id, device_id, kind),
    ).fetchall()
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


def _claim(
    conn: sqlite3.Connection,
    requester: tuple[str, int],
    account_id: str,
    devices: Sequence[int],
) -> PreKeyBundles | None:
    row = conn.execute("SELECT identity_key FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    wanted = set(devices)
    bundles: list[DeviceBundle] = []
    for (
        device_id,
        registration_id,
        signed_id,
        signed_key,
        signed_sig,
        kyber_id,
        kyber_key,
        kyber_sig,
    ) in conn.execute(
        "SELECT device_id, registration_id, signed_prekey_id, signed_prekey, signed_prekey_sig,"
        " kyber_id, kyber_key, kyber_sig FROM device_keys WHERE account_id = ?"
        " ORDER BY device_id",
        (account_id,),
    ).fetchall():
        if (wanted and device_id not in wanted) or (account_id, device_id) == requester:
            continue
        curve = _take_one_time_key(conn, account_id, device_id, _CURVE)
        one_time_kyber = _take_one_time_key(conn, account_id, device_id, _KYBER)
        if one_time_kyber is not None and one_time_kyber[2] is not None:
            kyber = KyberPreKey(one_time_kyber[0], one_time_kyber[1], one_time_kyber[2])
        else:
            kyber = KyberPreKey(kyber_id, kyber_key, kyber_sig)
        bundles.append(
            DeviceBundle(
                device_id=device_id,
                registration_id=registration_id,
                signed_prekey=SignedPreKey(signed_id, signed_key, signed_sig),
                kyber_prekey=kyber,
                prekey=OneTimePreKey(curve[0], curve[1]) if curve is not None else None,
                kyber_is_last_resort=one_time_kyber is None,
            )
        )
    if not bundles:
        return None
    return PreKeyBundles(account_id=account_id, identity_key=row[0], devices=bundles)


def _device_envelope(row: tuple[Any, ...]) -> DeviceEnvelope:  # sqlite3 rows are untyped
    dseq, raw_id, sender, sender_device, ts, payload = row
    return DeviceEnvelope(
        dseq=dseq,
        id=uuid.UUID(bytes=raw_id),
        sender=sender,
        sender_device=sender_device,
        ts=ts,
        payload=payload,
    )


def _may_reach(conn: sqlite3.Connection, sender: str, account: str) -> bool:
    """Whether ``sender`` may send to-device messages to ``account``'s devices: its own, or
    an account it shares at least one conversation with."""
    if account == sender:
        return True
    row = conn.execute(
        "SELECT 1 FROM members me JOIN members o ON o.conv_id = me.conv_id"
        " WHERE me.account_id = ? AND o.account_id = ? LIMIT 1",
        (sender, account),
    ).fetchone()
    return row is not None


def _queue_to_devices(
    conn: sqlite3.Connection,
    sender: tuple[str, int],
    msg_id: uuid.UUID,
    messages: Sequence[tuple[str, tuple[str, int], bytes]],
    now: int,
) -> DeviceQueued:
    sender_account, sender_device = sender
    done = conn.execute(
        "SELECT unknown FROM device_sends WHERE sender = ? AND sender_device = ? AND id = ?",
        (sender_account, sender_device, msg_id.bytes),
    ).fetchone()
    if done is not None:
        unknown = tuple(_mentions_decoder.decode(done[0])) if done[0] else ()
        return DeviceQueued((), unknown, duplicate=True)
    reachable: dict[str, bool] = {}
    queued: list[tuple[tuple[str, int], DeviceEnvelope]] = []
    refused: list[str] = []
    for address, (account, device), payload in messages:
        if account not in reachable:
            reachable[account] = _may_reach(conn, sender_account, account)
        # Only a reachable device other than the sender's is looked up.
        if not (
            reachable[account]
            and (account, device) != sender
            and conn.execute(
                "SELECT 1 FROM device_keys WHERE account_id = ? AND device_id = ?",
                (account, device),
            ).fetchone()
        ):
            refused.append(address)
            continue
        (dseq,) = conn.execute(
            "UPDATE devices SET last_dseq = last_dseq + 1 WHERE account_id = ? AND device_id = ?"
            " RETURNING last_dseq",
            (account, device),
        ).fetchone()
        envelope = DeviceEnvelope(
            dseq=dseq,
            id=msg_id,
            sender=sender_account,
            sender_device=sender_device,
            ts=now,
            payload=payload,
        )
        conn.execute(
            f"INSERT INTO device_queue (account_id, device_id, {_DEVICE_ENVELOPE_COLUMNS})"  # noqa: S608  # constant column list
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (account, device, dseq, msg_id.bytes, sender_account, sender_device, now, payload),
        )
        queued.append(((account, device), envelope))
    refused.sort()
    conn.execute(
        "INSERT INTO device_sends (sender, sender_device, id, ts, unknown) VALUES (?, ?, ?, ?, ?)",
        (
            sender_account,
            sender_device,
            msg_id.bytes,
            now,
            msgspec.json.encode(refused).decode() if refused else None,
        ),
    )
    return DeviceQueued(tuple(queued), tuple(refused), duplicate=False)


def _drop_device(conn: sqlite3.Connection, account_id: str, device_id: int) -> None:
    key = (account_id, device_id)
    for table in ("pending", "device_queue", "one_time_keys", "device_keys", "devices"):
        conn.execute(f"DELETE FROM {table} WHERE account_id = ? AND device_id = ?", key)  # noqa: S608  # constant table names
    # An approved link not fetched yet must not hand out a token for the removed device.
    conn.execute("DELETE FROM provisioning WHERE account_id = ? AND device_id = ?", key)


def _approve(conn: sqlite3.Connection, link: NewDeviceLink) -> int:
    row = conn.execute(
        "SELECT ephemeral_key, expires_at, account_id FROM provisioning WHERE id = ?",
        (link.provisioning_id,),
    ).fetchone()
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such provisioning request")
    ephemeral_key, expires_at, approved_for = row
    if expires_at <= link.now:
        raise Refused(ErrorCode.EXPIRED, "the provisioning request expired")
    if approved_for is not None:
        raise Refused(ErrorCode.CONFLICT, "the provisioning request was already approved")
    if not hmac.compare_digest(ephemeral_key, link.ephemeral_key):
        raise Refused(ErrorCode.CONFLICT, "the ephemeral key differs from the link code's")
    count, highest = conn.execute(
        "SELECT count(*), coalesce(max(device_id), 0) FROM devices WHERE account_id = ?",
        (link.account_id,),
    ).fetchone()
    if count >= link.max_devices:
        raise Refused(ErrorCode.FORBIDDEN, f"an account has at most {link.max_devices} devices")
    device_id = int(highest) + 1
    conn.execute(
        "INSERT INTO devices (account_id, device_id, name, token_key, token_hash, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            link.account_id,
            device_id,
            link.device_name,
            link.placeholder_key,
            link.placeholder_hash,
            link.now,
        ),
    )
    conn.execute(
        "UPDATE provisioning SET account_id = ?, device_id = ?, sealed = ? WHERE id = ?",
        (link.account_id, device_id, link.sealed, link.provisioning_id),
    )
    return device_id
