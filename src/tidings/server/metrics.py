"""Prometheus metrics (``GET /metrics``, :mod:`tidings.server.ops`).

One :class:`Metrics` per application, on its own registry:

- ``tidings_websocket_connections`` (gauge): device WebSocket connections open now;
- ``tidings_messages_in_total{kind, outcome}``: Sends and DeviceSends received, by answer
  (``accepted``, ``rejected``, ``staledevices``, ``deviceaccepted``, ``error``);
- ``tidings_messages_out_total``: envelopes handed to device connections (live fan-out; the
  replay of a pending queue on reconnect is not counted);
- ``tidings_pending_envelopes`` (gauge): envelopes waiting for a device's ack (pending and
  device queues), read from the store at each scrape;
- ``tidings_push_sent_total`` / ``tidings_push_failed_total`` / ``tidings_push_dropped_total``:
  the push dispatcher's counters;
- ``tidings_store_commit_seconds`` (histogram): each write transaction of the store's writer,
  fsync included;
- ``tidings_errors_total{code, via}``: error answers by protocol error code, ``via`` ``http``
  (a REST error body) or ``ws`` (a refused Send).

Nothing here carries a username, an account id or a conversation id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from tidings.server.bus.base import Bus, Delivery, Subscriber

COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Largest error body the middleware reads the code from.
_MAX_ERROR_BODY = 4096


def chain(value: object, *names: str) -> Any:
    """``value.a.b.c`` for names ``a, b, c``; None where one is missing (a feature that is
    not wired in)."""
    for name in names:
        value = getattr(value, name, None)
    return value


class _PushCollector(Collector):
    def __init__(self) -> None:
        self.source: Callable[[], Any] | None = None

    def collect(self) -> Iterator[Metric]:
        counters = self.source() if self.source is not None else None
        for name, doc in (
            ("sent", "push notifications accepted by a provider"),
            ("failed", "push notifications that failed for good"),
            ("dropped", "push wake-ups dropped unsent (queue full, retries exhausted)"),
        ):
            value = float(getattr(counters, name, 0)) if counters is not None else 0.0
            yield CounterMetricFamily(f"tidings_push_{name}", doc, value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "tidings_websocket_connections", "device WebSocket connections open", registry=r
        )
        self.messages_in = Counter(
            "tidings_messages_in", "Sends and DeviceSends received", ["kind", "outcome"],
            registry=r,
        )  # fmt: skip
        self.messages_out = Counter(
            "tidings_messages_out", "envelopes handed to device connections", registry=r
        )
        self.pending = Gauge(
            "tidings_pending_envelopes", "envelopes waiting for a device's ack", registry=r
        )
        self.commit_seconds = Histogram(
            "tidings_store_commit_seconds", "store write transactions, fsync included",
            buckets=COMMIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "tidings_errors", "error answers by protocol error code", ["code", "via"], registry=r
        )
        self._push = _PushCollector()
        r.register(self._push)

    def push_counters(self, source: Callable[[], Any]) -> None:
        """Where the push dispatcher's counters (``sent``, ``failed``, ``dropped``) are read."""
        self._push.source = source

    def observe_commit(self, seconds: float) -> None:
        self.commit_seconds.observe(seconds)

    def instrument_delivery(self, delivery: Any) -> None:
        """Count what ``delivery.send`` and ``delivery.device_send`` answer."""
        for name in ("send", "device_send"):
            inner = getattr(delivery, name)
            setattr(delivery, name, self._counting(name, inner))

    def _counting(self, kind: str, inner: Callable[..., Any]) -> Callable[..., Any]:
        # The counter of each answer type, looked up once (labels() takes a lock and builds
        # a key on every call).
        counters: dict[type, Any] = {}

        async def counted(*args: Any, **kwargs: Any) -> Any:
            answer = await inner(*args, **kwargs)
            answered = type(answer)
            counter = counters.get(answered)
            if counter is None:
                counter = counters[answered] = self.messages_in.labels(
                    kind, answered.__name__.lower()
                )
            counter.inc()
            code = getattr(answer, "code", None)
            if isinstance(code, str):
                self.errors.labels(code, "ws").inc()
            return answer

        return counted

    def middleware(self, app: Any) -> Any:
        """ASGI middleware: the connections gauge and REST error codes."""
        metrics = self

        async def metered(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "websocket":
                metrics.connections.inc()
                try:
                    await app(scope, receive, send)
                finally:
                    metrics.connections.dec()
                return
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = [0]

            async def watch(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status[0] = int(message["status"])
                elif message["type"] == "http.response.body" and status[0] >= 400:
                    metrics._count_error(bytes(message.get("body", b"")), status[0])
                    status[0] = 0  # only the first chunk
                await send(message)

            await app(scope, receive, watch)

        return metered

    def _count_error(self, body: bytes, status: int) -> None:
        code = f"http_{status}"
        if len(body) <= _MAX_ERROR_BODY:
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict) and isinstance(decoded.get("code"), str):
                code = decoded["code"][:40]
        self.errors.labels(code, "http").inc()


class _CountingSubscriber:
    """A subscriber that counts the envelopes delivered to it."""

    def __init__(self, inner: Subscriber, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    @property
    def account_id(self) -> str:
        return self.inner.account_id

    @property
    def device_id(self) -> int:
        return self.inner.device_id

    def deliver(self, delivery: Delivery) -> None:
        if delivery.conv is not None or delivery.dseq:
            self._metrics.messages_out.inc()
        self.inner.deliver(delivery)

    def replaced(self) -> None:
        self.inner.replaced()

    def revoked(self) -> None:
        self.inner.revoked()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class MeteredBus:
    """A :class:`~tidings.server.bus.base.Bus` that counts envelopes going out."""

    def __init__(self, inner: Bus, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics
        self._wrapped: dict[int, _CountingSubscriber] = {}

    async def attach(self, subscriber: Subscriber) -> None:
        counting = _CountingSubscriber(subscriber, self._metrics)
        self._wrapped[id(subscriber)] = counting
        await self.inner.attach(counting)

    async def detach(self, subscriber: Subscriber) -> None:
        counting = self._wrapped.pop(id(subscriber), None)
        await self.inner.detach(counting if counting is not None else subscriber)

    async def to_accounts(
        self,
        accounts: Iterable[str],
        delivery: Delivery,
        *,
        skip: tuple[str, int] | None = None,
        own: Mapping[tuple[str, int], Delivery] | None = None,
    ) -> None:
        await self.inner.to_accounts(accounts, delivery, skip=skip, own=own)

    async def to_device(self, account_id: str, device_id: int, delivery: Delivery) -> None:
        await self.inner.to_device(account_id, device_id, delivery)

    async def revoke(self, account_id: str, device_id: int) -> None:
        await self.inner.revoke(account_id, device_id)

    def online(self, account_id: str) -> int:
        return self.inner.online(account_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
