"""The dispatcher: retries with backoff, registration drops, a bounded queue, clean stop, and a
provider outage that never reaches the caller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import pytest

from tidings.server.push.dispatcher import PushDispatcher
from tidings.server.push.log import LogProvider
from tidings.server.push.provider import (
    Platform,
    Priority,
    PushRegistration,
    PushResult,
    Wake,
    WakeKind,
)

REG = PushRegistration(Platform.LOG, "token-1", device_id="dev-1")
ALERT = Wake(WakeKind.ALERT, Priority.HIGH, "c1", 1)
SILENT = Wake(WakeKind.SILENT, Priority.NORMAL, "c1", 1)


class ScriptedProvider:
    """Answers with ``script`` in order (then delivered); can be made to hang."""

    platform = Platform.LOG

    def __init__(self, script: Iterable[PushResult | BaseException] = ()) -> None:
        self.script = list(script)
        self.calls: list[tuple[PushRegistration, Wake]] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def send(self, registration: PushRegistration, wake: Wake) -> PushResult:
        self.calls.append((registration, wake))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, BaseException):
                raise step
            return step
        return PushResult.delivered()

    async def aclose(self) -> None:
        return None


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def dispatcher(provider: ScriptedProvider, **kwargs: object) -> PushDispatcher:
    options: dict[str, object] = {"sleep": RecordingSleep(), "rng": lambda: 0.5, "workers": 2}
    options.update(kwargs)
    return PushDispatcher({Platform.LOG: provider}, **options)  # type: ignore[arg-type]


async def test_delivers_in_the_background() -> None:
    provider = ScriptedProvider()
    d = dispatcher(provider)
    await d.start()
    assert d.submit(REG, ALERT) is True
    assert provider.calls == []  # submit did not send inline
    await d.join()
    assert provider.calls == [(REG, ALERT)]
    assert (d.counters.submitted, d.counters.sent) == (1, 1)
    await d.stop()


async def test_retries_with_growing_jittered_backoff_then_delivers() -> None:
    provider = ScriptedProvider([PushResult.retry("503")] * 3)
    sleep = RecordingSleep()
    d = dispatcher(provider, sleep=sleep, base_backoff=1.0, max_attempts=5)
    await d.start()
    d.submit(REG, ALERT)
    await d.join()
    assert len(provider.calls) == 4
    assert sleep.delays == [0.75, 1.5, 3.0]  # equal jitter at rng=0.5: 3/4 of 1, 2, 4
    assert (d.counters.retried, d.counters.sent, d.counters.dropped) == (3, 1, 0)
    await d.stop()


async def test_retry_after_is_honoured() -> None:
    provider = ScriptedProvider([PushResult.retry("429", after=30.0)])
    sleep = RecordingSleep()
    d = dispatcher(provider, sleep=sleep)
    await d.start()
    d.submit(REG, ALERT)
    await d.join()
    assert sleep.delays == [30.0]
    await d.stop()


async def test_gives_up_after_max_attempts() -> None:
    provider = ScriptedProvider([PushResult.retry("500")] * 10)
    d = dispatcher(provider, max_attempts=3)
    await d.start()
    d.submit(REG, ALERT)
    await d.join()
    assert len(provider.calls) == 3
    assert (d.counters.retried, d.counters.dropped, d.counters.sent) == (2, 1, 0)
    await d.stop()


def test_backoff_bounds() -> None:
    d = PushDispatcher({}, base_backoff=2.0, max_backoff=10.0, rng=lambda: 0.0)
    assert [d.backoff(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    d = PushDispatcher({}, base_backoff=2.0, max_backoff=10.0, rng=lambda: 1.0)
    assert [d.backoff(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]
    assert d.backoff(1, retry_after=7.0) == 7.0
    assert d.backoff(1, retry_after=999.0) == 10.0  # a hostile Retry-After is capped


@pytest.mark.parametrize("async_hook", [False, True])
async def test_invalid_registration_is_handed_to_the_hook(async_hook: bool) -> None:
    dropped: list[tuple[PushRegistration, str]] = []

    def hook(reg: PushRegistration, reason: str) -> None:
        dropped.append((reg, reason))

    async def ahook(reg: PushRegistration, reason: str) -> None:
        dropped.append((reg, reason))

    provider = ScriptedProvider([PushResult.drop_registration("Unregistered")])
    d = dispatcher(provider, on_drop_registration=ahook if async_hook else hook)
    await d.start()
    d.submit(REG, ALERT)
    await d.join()
    assert dropped == [(REG, "Unregistered")]
    assert (d.counters.registrations_dropped, d.counters.retried) == (1, 0)
    await d.stop()


async def test_a_failing_hook_and_a_raising_provider_do_not_kill_workers() -> None:
    def hook(reg: PushRegistration, reason: str) -> None:
        raise RuntimeError("store is down")

    provider = ScriptedProvider([PushResult.drop_registration("410"), RuntimeError("provider bug")])
    d = dispatcher(provider, on_drop_registration=hook, workers=1)
    await d.start()
    d.submit(REG, ALERT)
    d.submit(REG, ALERT)
    await d.join()
    # the raise counted as a retry, and the retry then went out
    assert (d.counters.registrations_dropped, d.counters.retried, d.counters.sent) == (1, 1, 1)
    await d.stop()


async def test_permanent_failures_and_unknown_platforms_count_as_failed() -> None:
    provider = ScriptedProvider([PushResult.failed_permanently("400 BadTopic")])
    d = dispatcher(provider)
    await d.start()
    d.submit(REG, ALERT)
    d.submit(PushRegistration(Platform.APNS, "ab" * 32), ALERT)
    await d.join()
    assert (d.counters.failed, d.counters.retried, d.counters.sent) == (2, 0, 0)
    await d.stop()


async def test_full_queue_drops_the_oldest_silent_wake_first() -> None:
    provider = ScriptedProvider()
    provider.gate = asyncio.Event()
    d = dispatcher(provider, workers=1, queue_size=3)
    await d.start()
    d.submit(REG, ALERT)  # taken by the only worker, which then hangs
    await provider.entered.wait()
    a1 = Wake(WakeKind.ALERT, Priority.HIGH, "c1")
    s1 = Wake(WakeKind.SILENT, Priority.NORMAL, "c2")
    a2 = Wake(WakeKind.ALERT, Priority.HIGH, "c3")
    a3 = Wake(WakeKind.ALERT, Priority.HIGH, "c4")
    assert [d.submit(REG, w) for w in (a1, s1, a2)] == [True, True, True]
    assert d.submit(REG, a3) is True  # full: the silent one goes
    assert d.counters.dropped_queue_full == 1
    assert d.submit(REG, SILENT) is False  # full of alerts: a new silent wake is refused
    a4 = Wake(WakeKind.ALERT, Priority.HIGH, "c5")
    assert d.submit(REG, a4) is True  # full of alerts: the oldest alert goes
    assert (d.counters.dropped, d.counters.dropped_queue_full) == (3, 3)
    provider.gate.set()
    await d.join()
    assert [w.conversation_hint for _, w in provider.calls] == ["c1", "c3", "c4", "c5"]
    await d.stop()


async def test_an_outage_never_blocks_submit_and_stop_is_clean() -> None:
    provider = ScriptedProvider()
    provider.gate = asyncio.Event()  # the provider never answers
    d = dispatcher(provider, workers=2, queue_size=50, attempt_timeout=3600.0)
    await d.start()
    accepted = [d.submit(REG, ALERT if i % 2 else SILENT) for i in range(500)]
    await provider.entered.wait()
    assert sum(accepted) >= 50
    assert d.queued <= 50
    assert d.counters.submitted == 500
    await d.stop(drain_timeout=0.01)
    assert d.queued == 0
    assert d.submit(REG, ALERT) is False  # stopped: refused, counted, no exception
    c = d.counters
    assert c.sent == 0
    assert c.dropped >= 500 - 2  # everything but the two attempts in flight


async def test_a_hung_attempt_times_out_into_a_retry() -> None:
    provider = ScriptedProvider()
    provider.gate = asyncio.Event()
    d = dispatcher(provider, workers=1, attempt_timeout=0.01, max_attempts=2)
    await d.start()
    d.submit(REG, ALERT)
    await d.join()
    assert (d.counters.retried, d.counters.dropped) == (1, 1)
    await d.stop()


async def test_stop_cancels_pending_retries() -> None:
    provider = ScriptedProvider([PushResult.retry("503")])
    never = asyncio.Event()
    waiting = asyncio.Event()

    async def slow_sleep(seconds: float) -> None:
        waiting.set()
        await never.wait()

    d = dispatcher(provider, sleep=slow_sleep)
    await d.start()
    d.submit(REG, ALERT)
    await waiting.wait()
    await d.stop()
    assert d.counters.dropped == 1
    assert len(provider.calls) == 1


async def test_log_provider_reports_delivered_and_logs_no_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tidings.server.push")
    d = PushDispatcher({Platform.LOG: LogProvider()})
    await d.start()
    d.submit(REG, Wake(WakeKind.ALERT, Priority.HIGH, "secret-conv-hint", 77))
    await d.join()
    await d.stop()
    assert d.counters.sent == 1
    text = caplog.text
    assert "dev-1" in text and "alert" in text and "high" in text
    assert "secret-conv-hint" not in text and "77" not in text and "token-1" not in text
