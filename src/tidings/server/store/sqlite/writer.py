"""Connections to the store's SQLite file: one writer thread doing **group commit**, and a pool
of reader threads.

Writes never run on the event loop. They go to one writer thread that takes every operation
queued while the previous transaction ran and runs them together in one transaction. A refused
operation changes nothing and does not disturb its neighbours: most are refused before they
write anything; when one fails after writing, the transaction is rolled back and the group runs
again with each operation inside its own savepoint. Reads run on a small pool of threads with
their own connections (WAL lets them read while the writer writes).

``synchronous=FULL`` by default: the WAL is fsynced at every commit, so a committed transaction
(and the ``Accepted`` sent after it) survives a power cut; group commit shares that fsync among
every operation of the transaction. ``synchronous=NORMAL`` (the ``sqlite_synchronous = "normal"``
setting) fsyncs only at checkpoints: a committed transaction survives the process being killed,
but a power cut may lose the last ones.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from tidings import migrations
from tidings.server.store.sqlite.migrations import component_steps, steps

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most operations committed by one transaction.
MAX_GROUP = 1000

#: ``PRAGMA synchronous`` of each ``sqlite_synchronous`` setting.
SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


#: Most conversations whose Send facts the writer keeps (insertion order: the oldest go first).
MAX_CACHED_CONVERSATIONS = 4096


class WriterConnection(sqlite3.Connection):
    """The writer thread's connection. It carries what the writer caches between transactions:
    per conversation, what every end-to-end-encrypted Send checks (the kind and every member's
    devices with keys, :func:`~tidings.server.store.sqlite.conversations.send_facts`). TEMP
    triggers on this connection forget an entry whenever a statement changes the rows it was
    read from, whatever code path ran it (:func:`_watch_send_facts`); a rollback forgets all.
    Readers and other connections have no cache and always read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: conversation id → (kind, account id → device ids with keys, in id order)
        self.send_facts: dict[str, tuple[str, dict[str, list[int]]]] = {}
        #: conversation id → who a message is queued for (:class:`Fanout`)
        self.fanout: dict[str, Fanout] = {}

    def remember(self, conv_id: str, facts: tuple[str, dict[str, list[int]]]) -> None:
        if len(self.send_facts) >= MAX_CACHED_CONVERSATIONS:
            del self.send_facts[next(iter(self.send_facts))]
        self.send_facts[conv_id] = facts

    def remember_fanout(self, conv_id: str, fanout: Fanout) -> None:
        if len(self.fanout) >= MAX_CACHED_CONVERSATIONS:
            del self.fanout[next(iter(self.fanout))]
        self.fanout[conv_id] = fanout

    def forget(self, conv_id: str | None) -> None:
        """Called by the triggers: one conversation changed (``None``: any may have)."""
        if conv_id is None:
            self.send_facts.clear()
            self.fanout.clear()
        else:
            self.send_facts.pop(conv_id, None)
            self.fanout.pop(conv_id, None)

    def forget_account(self, account_id: str) -> None:
        """Called by the triggers: the account's devices changed. Forgets the conversations it
        is a member of (a new account is in none)."""
        for conv_id in [c for c, f in self.fanout.items() if account_id in f.devices]:
            del self.fanout[conv_id]


class Fanout:
    """Who a conversation's messages are queued for, as the writer keeps it between
    transactions: the kind, every member's devices (all of them, keys or not, in id order)
    and, in a direct conversation, which members block which (their messages are not
    queued for the blocker)."""

    __slots__ = ("blockers", "devices", "kind")

    def __init__(
        self, kind: str, devices: dict[str, tuple[int, ...]], blockers: dict[str, set[str]]
    ) -> None:
        self.kind = kind
        #: member account → its device ids
        self.devices = devices
        #: blocked account → the members that block it (direct conversations only)
        self.blockers = blockers


#: The rows a conversation's Send facts are read from, and the triggers that forget them: a
#: membership, a conversation's kind, and which devices have keys (any conversation of the
#: account: forget all; rare).
_WATCH = (
    ("members", "INSERT", "NEW.conv_id"),
    ("members", "DELETE", "OLD.conv_id"),
    ("members", "UPDATE OF conv_id, account_id", "NULL"),
    ("conversations", "DELETE", "OLD.id"),
    ("conversations", "UPDATE OF id, kind", "NULL"),
    ("device_keys", "INSERT", "NULL"),
    ("device_keys", "DELETE", "NULL"),
    ("device_keys", "UPDATE OF account_id, device_id", "NULL"),
    ("blocks", "INSERT", "NULL"),
    ("blocks", "DELETE", "NULL"),
    ("blocks", "UPDATE", "NULL"),
    ("devices", "UPDATE OF account_id, device_id", "NULL"),
)
#: The same for a conversation's :class:`Fanout`: an account's devices (every conversation it
#: is a member of).
_WATCH_ACCOUNT = (
    ("devices", "INSERT", "NEW.account_id"),
    ("devices", "DELETE", "OLD.account_id"),
)


def _watch_send_facts(conn: WriterConnection) -> None:
    conn.create_function("tidings_forget", 1, conn.forget)
    conn.create_function("tidings_forget_account", 1, conn.forget_account)
    for i, (table, event, key) in enumerate(_WATCH):
        conn.execute(
            f"CREATE TEMP TRIGGER IF NOT EXISTS tidings_forget_{i} AFTER {event} ON main.{table}"
            f" BEGIN SELECT tidings_forget({key}); END"
        )
    for i, (table, event, key) in enumerate(_WATCH_ACCOUNT):
        conn.execute(
            f"CREATE TEMP TRIGGER IF NOT EXISTS tidings_forget_account_{i} AFTER {event}"
            f" ON main.{table} BEGIN SELECT tidings_forget_account({key}); END"
        )


def _connect(path: Path, *, read_only: bool, synchronous: str = "full") -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every transaction is an explicit BEGIN.
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=30.0,
        factory=sqlite3.Connection if read_only else WriterConnection,
    )
    conn.execute("PRAGMA busy_timeout = 30000")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[synchronous]}")
    return conn


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


#: A write operation that runs many at once: given the items of every such operation queued
#: back to back in one transaction, the outcome of each, in order: ``(result,)``, or the
#: exception that refused it *before it wrote anything*. An exception raised out of it (after
#: writing) rolls the transaction back, and the group runs again with each operation alone.
Batch = Callable[[sqlite3.Connection, list[Any]], Sequence[tuple[Any] | Exception]]


class _BatchJob(Generic[T]):
    """One operation of a :data:`Batch` kind: the writer runs the consecutive operations of
    one kind together (one statement per conversation instead of one per operation)."""

    __slots__ = ("_future", "_outcome", "batch", "item")

    def __init__(self, batch: Batch, item: object, future: asyncio.Future[T]) -> None:
        self.batch = batch
        self.item = item
        self._future = future
        self._outcome: tuple[T] | BaseException | None = None

    def run(self, conn: sqlite3.Connection) -> None:
        """Run alone (the group's second, guarded run)."""
        (outcome,) = self.batch(conn, [self.item])
        if isinstance(outcome, Exception):
            raise outcome
        self._outcome = outcome

    def done(self, outcome: tuple[T] | Exception) -> None:
        self._outcome = outcome

    def fail(self, exc: BaseException) -> None:
        self._outcome = exc

    def settle(self) -> None:
        if self._future.done():
            return
        if isinstance(self._outcome, tuple):
            self._future.set_result(self._outcome[0])
        elif self._outcome is not None:
            self._future.set_exception(self._outcome)


def _settle_all(jobs: Iterable[_Work]) -> None:
    for job in jobs:
        job.settle()


class _Writer(threading.Thread):
    def __init__(
        self, path: Path, loop: asyncio.AbstractEventLoop, synchronous: str = "full"
    ) -> None:
        super().__init__(name="tidings-sqlite-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self._loop = loop
        #: lists of operations, as the event loop hands them over; None: stop
        self.jobs: queue.SimpleQueue[list[_Work] | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.open_error: BaseException | None = None
        #: write transactions run so far (each carries one or more operations)
        self.transactions = 0
        #: called from this thread with the seconds each transaction took (metrics)
        self.observe: Callable[[float], None] | None = None

    def run(self) -> None:
        try:
            conn = _connect(self._path, read_only=False, synchronous=self._synchronous)
            migrations.migrate(conn, steps())
            for component, scripts in component_steps().items():
                migrations.migrate(conn, scripts, component=component)
            assert isinstance(conn, WriterConnection)
            _watch_send_facts(conn)
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
                group = list(first)
                while len(group) < MAX_GROUP:
                    try:
                        more = self.jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    group.extend(more)
                self._commit(conn, group)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, group: list[_Work]) -> None:
        self.transactions += 1
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            if not _run_plain(conn, group):
                # An operation failed after it had written something: undo the whole group
                # and run it again with a savepoint around each operation.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                _forget_all(conn)  # what was cached may have come from undone rows
                conn.execute("BEGIN IMMEDIATE")
                _run_guarded(conn, group)
                _forget_all(conn)
            if conn.in_transaction:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("write transaction failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            _forget_all(conn)
            for job in group:
                job.fail(exc)
        if self.observe is not None:
            self.observe(time.perf_counter() - started)
        # One wake-up of the event loop per transaction, whatever the number of operations.
        self._loop.call_soon_threadsafe(_settle_all, group)


def _forget_all(conn: sqlite3.Connection) -> None:
    if isinstance(conn, WriterConnection):
        conn.forget(None)


def _run_plain(conn: sqlite3.Connection, group: list[_Work]) -> bool:
    """Run the operations one after the other without savepoints (two statements fewer per
    operation). An operation refused before it changed a row is simply failed: SQLite undoes a
    failed statement by itself, so nothing of it remains. Returns False, leaving the
    transaction to be rolled back, as soon as an operation fails after changing rows (or the
    failure ended the transaction)."""
    i, count = 0, len(group)
    while i < count:
        job = group[i]
        before = conn.total_changes
        if isinstance(job, _BatchJob):
            # This operation and every one of its kind right after it, as one batch.
            end = i + 1
            while end < count:
                other = group[end]
                if not isinstance(other, _BatchJob) or other.batch is not job.batch:
                    break
                end += 1
            run: list[_BatchJob[Any]] = group[i:end]  # type: ignore[assignment]
            i = end
            try:
                outcomes = job.batch(conn, [b.item for b in run])
            except Exception as exc:
                if conn.total_changes != before or not conn.in_transaction:
                    return False
                for b in run:
                    b.fail(exc)
                continue
            for b, outcome in zip(run, outcomes, strict=True):
                b.done(outcome)
            continue
        i += 1
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


class Database:
    """The writer and the readers of one SQLite file: what every part of
    :class:`~tidings.server.store.sqlite.SqliteStore` runs its transactions on."""

    def __init__(self, path: Path, *, readers: int = 2, synchronous: str = "full") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.path = path
        self.synchronous = synchronous
        self._reader_count = readers
        self._writer: _Writer | None = None
        #: operations queued during this turn of the event loop (None: none yet)
        self._submitting: list[_Work] | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_conns_lock = threading.Lock()
        #: gets the seconds of every write transaction, from the writer thread (metrics)
        self.commit_observer: Callable[[float], None] | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = _Writer(self.path, asyncio.get_running_loop(), self.synchronous)
        writer.observe = self.commit_observer
        writer.start()
        await asyncio.to_thread(writer.ready.wait)
        if writer.open_error is not None:
            raise writer.open_error
        self._writer = writer
        self._readers = ThreadPoolExecutor(self._reader_count, thread_name_prefix="tidings-read")

    async def close(self) -> None:
        self._hand_over()
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
        self._submit(_Job(fn, future))
        return await future

    def _submit(self, job: _Work) -> None:
        """Queue ``job`` for the writer. The operations queued during one turn of the event
        loop are handed over together at its end: the writer wakes once for them, and they
        share a transaction (without this, each would wake it and contend for the GIL)."""
        submitting = self._submitting
        if submitting is None:
            submitting = self._submitting = []
            asyncio.get_running_loop().call_soon(self._hand_over)
        submitting.append(job)

    def _hand_over(self) -> None:
        submitting, self._submitting = self._submitting, None
        if not submitting:
            return
        if self._writer is None:  # closed in between
            for job in submitting:
                job.fail(RuntimeError("store is not open"))
                job.settle()
            return
        self._writer.jobs.put(submitting)

    async def _write_batched(self, batch: Batch, item: object) -> Any:
        """Queue ``item`` for ``batch``: it runs together with the operations of the same kind
        queued right before and after it (see :data:`Batch`)."""
        if self._writer is None:
            raise RuntimeError("store is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit(_BatchJob(batch, item, future))
        return await future

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._in_read, fn)

    def _in_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, read_only=True, synchronous=self.synchronous)
            self._local.conn = conn
            with self._read_conns_lock:
                self._read_conns.append(conn)
        conn.execute("BEGIN")  # one snapshot for all the statements of fn
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")
