"""Connections to the store's PostgreSQL database: a pool, and transactions that are retried
when concurrency (another request, another node) got in their way.

Every write is one transaction at READ COMMITTED. The rules that must hold between nodes are
row locks and constraints, never a check in Python alone: a conversation's seq is taken by
``UPDATE conversations SET last_seq = last_seq + 1 ... RETURNING`` (the row stays locked until
commit, so concurrent Sends to one conversation queue on it and a rollback gives the number
back), operations that change a conversation lock its row first, one-time prekeys are taken by
``DELETE ... FOR UPDATE SKIP LOCKED``, idempotent inserts use unique constraints.

When two transactions meet on a constraint (two nodes creating the same direct conversation,
the same message sent twice at once) or deadlock, the loser is rolled back and runs again from
the start: it then sees the winner's committed rows and answers as a retry would (the original
seq, the existing conversation). An operation function may therefore run more than once and
must have no effect outside its connection.

Order: a device's pipelined Sends to a conversation must be stored in the order it wrote them
(docs/architecture.md, "Written order under limits"). The SQLite store gets that from its one
writer queue; here Sends go through a :class:`~tidings.server.store.postgres.batches.Batcher`
(the Sends queued together are written as one transaction, a conversation's in the order they
came, one batch at a time per conversation), and :meth:`Database._in_order` queues other
operations on one key (a channel) within the node, first come first served, before they take
a connection.

Text: PostgreSQL's text cannot hold a NUL character, which SQLite's can. A request that hands
one in (an id, a name, a token from the network) can match nothing and store nothing here, so it
is refused with ``bad_frame`` and changes nothing, instead of failing as an internal error.

Durability: PostgreSQL's ``synchronous_commit`` (on by default) flushes the WAL at every
commit, before :meth:`Database._write` returns; concurrent commits share a flush (PostgreSQL
groups them itself), which is the group commit the SQLite store does by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import asyncpg

from tidings.protocol import ErrorCode
from tidings.server.domain import Refused
from tidings.server.store.postgres.schema import migrate

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Runs of one operation before a conflict or deadlock is given up on.
MAX_ATTEMPTS = 8

#: Pool size per node; a transaction holds a connection only while it runs.
POOL_SIZE = 10

#: what an operation runs its statements on (a pooled connection, or a plain one)
if TYPE_CHECKING:
    Connection: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    )
else:
    Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Operation = Callable[[Connection], Awaitable[T]]


class Retry(Exception):
    """Raised by an operation that met a concurrent one (e.g. ``ON CONFLICT DO NOTHING`` took
    nothing): roll back and run the operation again."""


_RETRIED = (
    Retry,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.UniqueViolationError,
)


@contextlib.contextmanager
def _text_refused() -> Iterator[None]:
    """A NUL in a text parameter (PostgreSQL's text cannot hold one) is bad input: Refused."""
    try:
        yield
    except asyncpg.exceptions.CharacterNotInRepertoireError as exc:
        raise Refused(ErrorCode.BAD_FRAME, "text must not contain a NUL character") from exc


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool: the store sets no session
    state (no settings, LISTEN, cursors or session advisory locks; its advisory locks are
    transaction-scoped), and asyncpg rolls back a transaction left open on its own. The
    default reset would cost every operation one more round trip."""


class Database:
    """The pool of one PostgreSQL database: what every part of
    :class:`~tidings.server.store.postgres.PostgresStore` runs its transactions on."""

    def __init__(self, dsn: str, *, pool_size: int = POOL_SIZE) -> None:
        self.dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        #: write transactions committed so far
        self.transactions = 0
        #: gets the seconds of every write transaction (metrics)
        self.commit_observer: Callable[[float], None] | None = None
        #: key → (its lock, operations holding or waiting for it)
        self._queues: dict[str, tuple[asyncio.Lock, int]] = {}

    async def open(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self._pool_size,
            statement_cache_size=256,
            # The store's statements are constants, so the cache's size bounds it; a lifetime
            # would re-arm a timer on the event loop at every statement run.
            max_cached_statement_lifetime=0,
            reset=_keep_session,
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def _write(self, fn: Operation[T]) -> T:
        """Run ``fn`` in a transaction, again from the start if it met a concurrent one."""
        pool = self._require_pool()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            started = time.perf_counter()
            async with pool.acquire() as conn:
                try:
                    with _text_refused():
                        async with conn.transaction():
                            result = await fn(conn)
                except _RETRIED:
                    if attempt == MAX_ATTEMPTS:
                        raise
                    continue
            self.transactions += 1
            if self.commit_observer is not None:
                self.commit_observer(time.perf_counter() - started)
            return result
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def _in_order(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s turn: operations on one key run one after the other, in the order
        they were called (asyncio locks wake their waiters first come, first served)."""
        lock, users = self._queues.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._queues[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._queues[key]
            if users == 1:
                del self._queues[key]
            else:
                self._queues[key] = (lock, users - 1)

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """The rows of one statement, run on its own: a statement sees one snapshot, so a
        read that fits in one needs no transaction (and none of its round trips)."""
        with _text_refused():
            async with self._require_pool().acquire() as conn:
                return await conn.fetch(query, *args)

    async def _read(self, fn: Operation[T]) -> T:
        """Run ``fn`` on one snapshot (a read-only REPEATABLE READ transaction)."""
        with _text_refused():
            async with (
                self._require_pool().acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await fn(conn)
