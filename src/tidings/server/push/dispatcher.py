"""The push dispatcher: a bounded queue drained by worker tasks, with retries and counters.

Guarantees, first:

* :meth:`PushDispatcher.submit` is a plain (non-async) call that never waits, never raises
  for provider trouble and never does I/O: delivery calls it and moves on. When the queue is
  full the oldest *silent* wake is dropped first (then, for a new silent wake, the new one;
  for a new alert, the oldest alert), and every drop is counted.
* A provider outage, a hung provider (each attempt has a timeout) or a provider that raises is
  logged and counted; it never reaches the caller and never stops the workers.
* Retries use jittered exponential backoff, at least what the service asked for with
  ``Retry-After``, and stop after ``max_attempts``; a waiting retry holds no worker.
* When a provider says a registration is invalid, ``on_drop_registration`` is called with it
  (errors in the hook are logged, not propagated).
* :meth:`stop` stops accepting work, gives queued work ``drain_timeout`` seconds, then cancels
  the workers and pending retries. Providers are not closed: their owner closes them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Mapping

from tidings.server.push.provider import (
    Outcome,
    Platform,
    PushProvider,
    PushRegistration,
    PushResult,
    Wake,
    WakeKind,
    token_fingerprint,
)

log = logging.getLogger(__name__)

DropHook = Callable[[PushRegistration, str], Awaitable[None] | None]


@dataclasses.dataclass(slots=True)
class PushCounters:
    """Running totals for metrics."""

    submitted: int = 0
    #: delivered to the push service
    sent: int = 0
    #: attempts that will be tried again
    retried: int = 0
    #: wakes dropped unsent: queue full, dispatcher stopped, or retries exhausted
    dropped: int = 0
    #: of ``dropped``, those pushed out of a full queue
    dropped_queue_full: int = 0
    #: failed for good: permanent errors, unknown platform
    failed: int = 0
    #: registrations the providers declared invalid
    registrations_dropped: int = 0


@dataclasses.dataclass(slots=True)
class _Job:
    registration: PushRegistration
    wake: Wake
    attempt: int = 1


class PushDispatcher:
    """Delivers wakes through the provider of each registration's platform."""

    def __init__(
        self,
        providers: Mapping[Platform, PushProvider],
        *,
        queue_size: int = 10_000,
        workers: int = 4,
        max_attempts: int = 5,
        base_backoff: float = 1.0,
        max_backoff: float = 300.0,
        attempt_timeout: float = 30.0,
        on_drop_registration: DropHook | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if queue_size < 1 or workers < 1 or max_attempts < 1:
            raise ValueError("queue_size, workers and max_attempts must be at least 1")
        self._providers = dict(providers)
        self._queue_size = queue_size
        self._worker_count = workers
        self._max_attempts = max_attempts
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff
        self._attempt_timeout = attempt_timeout
        self._on_drop = on_drop_registration
        self._sleep = sleep
        self._rng = rng
        self._queue: collections.deque[_Job] = collections.deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued, in flight or waiting to be retried
        self._idle.set()
        self._quiet = asyncio.Event()  # nothing queued or in flight
        self._quiet.set()
        self._busy = 0
        self._workers: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.Task[None]] = set()
        self._accepting = False
        self.counters = PushCounters()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        if self._workers:
            return
        self._accepting = True
        self._workers = [
            asyncio.create_task(self._work(), name=f"push-worker-{i}")
            for i in range(self._worker_count)
        ]

    def submit(self, registration: PushRegistration, wake: Wake) -> bool:
        """Queue ``wake`` for ``registration``; False if it was dropped. Never blocks."""
        self.counters.submitted += 1
        if not self._accepting:
            self.counters.dropped += 1
            return False
        return self._enqueue(_Job(registration, wake))

    def _enqueue(self, job: _Job) -> bool:
        if len(self._queue) >= self._queue_size and not self._make_room(job):
            return False
        self._queue.append(job)
        self._idle.clear()
        self._quiet.clear()
        self._ready.set()
        return True

    def _make_room(self, job: _Job) -> bool:
        """Drop one queued job for ``job``, or refuse ``job``; either way count the drop."""
        self.counters.dropped += 1
        self.counters.dropped_queue_full += 1
        victim = next((j for j in self._queue if j.wake.kind is WakeKind.SILENT), None)
        if victim is None and job.wake.kind is WakeKind.SILENT:
            log.warning("push queue full: dropping a new silent wake")
            return False
        if victim is None:
            victim = self._queue[0]
        self._queue.remove(victim)
        log.warning("push queue full: dropped the oldest %s wake", victim.wake.kind.value)
        return True

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                self._note_progress()
                await self._ready.wait()
                continue
            job = self._queue.popleft()
            self._busy += 1
            try:
                await self._attempt(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not kill the worker
                log.exception("push worker: unexpected error")
            finally:
                self._busy -= 1

    async def _attempt(self, job: _Job) -> None:
        registration = job.registration
        provider = self._providers.get(registration.platform)
        if provider is None:
            log.error("push: no provider for platform %s", registration.platform.value)
            self.counters.failed += 1
            return
        try:
            result = await asyncio.wait_for(
                provider.send(registration, job.wake), self._attempt_timeout
            )
        except TimeoutError:
            result = PushResult.retry("attempt timed out")
        except Exception as exc:  # providers should not raise; treat it as transient
            log.exception("push provider %s raised", registration.platform.value)
            result = PushResult.retry(f"provider raised {type(exc).__name__}")
        await self._handle(job, result)

    async def _handle(self, job: _Job, result: PushResult) -> None:
        fingerprint = token_fingerprint(job.registration.token)
        if result.outcome is Outcome.DELIVERED:
            self.counters.sent += 1
        elif result.outcome is Outcome.DROP_REGISTRATION:
            self.counters.registrations_dropped += 1
            self.counters.dropped += 1
            await self._drop_registration(job.registration, result.reason)
        elif result.outcome is Outcome.FAILED_PERMANENTLY:
            self.counters.failed += 1
            log.error("push to %s failed permanently: %s", fingerprint, result.reason)
        elif job.attempt >= self._max_attempts or not self._accepting:
            self.counters.dropped += 1
            log.warning(
                "push to %s given up after %d attempts: %s", fingerprint, job.attempt, result.reason
            )
        else:
            self.counters.retried += 1
            delay = self.backoff(job.attempt, result.retry_after)
            job.attempt += 1
            task = asyncio.create_task(self._retry_later(job, delay))
            self._retries.add(task)
            task.add_done_callback(self._retry_done)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1``: half fixed, half random ("equal jitter"),
        doubling per attempt up to ``max_backoff``, and never less than ``retry_after``."""
        cap = min(self._max_backoff, self._base_backoff * 2.0 ** (attempt - 1))
        delay = cap / 2 + self._rng() * cap / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._max_backoff))
        return delay

    async def _retry_later(self, job: _Job, delay: float) -> None:
        await self._sleep(delay)
        if self._accepting:
            self._enqueue(job)
        else:
            self.counters.dropped += 1

    def _retry_done(self, task: asyncio.Task[None]) -> None:
        self._retries.discard(task)
        self._note_progress()

    def _note_progress(self) -> None:
        if not self._queue and self._busy == 0:
            self._quiet.set()
            if not self._retries:
                self._idle.set()

    async def _drop_registration(self, registration: PushRegistration, reason: str) -> None:
        if self._on_drop is None:
            return
        try:
            outcome = self._on_drop(registration, reason)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("push: dropping registration %r failed", registration)

    async def join(self) -> None:
        """Wait until nothing is queued, in flight or waiting to be retried."""
        await self._idle.wait()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop accepting wakes, let queued ones go out for ``drain_timeout`` seconds, then
        cancel the workers and pending retries (those wakes are counted as dropped)."""
        if not self._workers:
            return
        if self._queue or self._busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), drain_timeout)
        self._accepting = False
        self.counters.dropped += sum(1 for t in self._retries if not t.done())
        pending = [*self._workers, *self._retries]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.counters.dropped += len(self._queue)
        self._queue.clear()
        self._workers = []
        self._retries.clear()
        self._quiet.set()
        self._idle.set()
