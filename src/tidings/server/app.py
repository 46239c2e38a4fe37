"""The composition root: the one place that picks the concrete store and bus, wires the
services together and builds the ASGI application from the REST routes
(:mod:`tidings.server.http`), the WebSocket endpoint (:mod:`tidings.server.ws`) and the
lifespan that opens the store and purges expired pending entries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from litestar import Litestar

from tidings.protocol import MAX_FRAME_BYTES
from tidings.server import http, ops, ws
from tidings.server.admin.service import AdminService
from tidings.server.admin.wiring import operations_lifespan
from tidings.server.auth import Authenticator
from tidings.server.bus.local import LocalBus
from tidings.server.channels.fanout import ChannelDeliverer, FanoutQueue, LocalFanout
from tidings.server.channels.push import ChannelPush
from tidings.server.channels.service import ChannelService
from tidings.server.config import ServerConfig
from tidings.server.delivery import DeliveryService
from tidings.server.directory import KeyDirectory, Provisioner
from tidings.server.groupadds import GroupAddGate
from tidings.server.logjson import RequestIds
from tidings.server.media.quota import QuotaLedger
from tidings.server.media.service import MediaService
from tidings.server.media.setup import build_blob_store
from tidings.server.metrics import MeteredBus, Metrics, chain
from tidings.server.push.dispatcher import PushDispatcher
from tidings.server.push.presence import PresenceBus
from tidings.server.push.service import PushService, load_or_create_hint_key
from tidings.server.push.wiring import build_providers
from tidings.server.ratelimit import RateLimiter
from tidings.server.sendlimits import SendLimiter, SendRates
from tidings.server.social import SocialService
from tidings.server.store.postgres import PostgresStore
from tidings.server.store.postgres.admin import PostgresAdmin
from tidings.server.store.postgres.media import PostgresQuotaLedger
from tidings.server.store.sqlite import SqliteStore
from tidings.server.store.sqlite.admin import SqliteAdmin
from tidings.server.store.sqlite.media import SqliteQuotaLedger
from tidings.server.vault.attempts import Backoff
from tidings.server.vault.keys import VaultKeys
from tidings.server.vault.service import VaultService

if TYPE_CHECKING:
    from tidings.server.bus.nats import NatsBus

log = logging.getLogger(__name__)

#: How often expired pending entries and provisioning requests are purged (seconds).
PURGE_INTERVAL = 300.0


def _stores(
    config: ServerConfig,
) -> tuple[SqliteStore | PostgresStore, SqliteAdmin | PostgresAdmin, QuotaLedger]:
    """The store the ``store`` setting names, with its admin view and media quota ledger."""
    if config.store == "sqlite":
        sqlite = SqliteStore(config.database_path, synchronous=config.sqlite_synchronous)
        return sqlite, SqliteAdmin(sqlite), SqliteQuotaLedger(sqlite)
    postgres = PostgresStore(config.store)
    return postgres, PostgresAdmin(postgres), PostgresQuotaLedger(postgres)


def _channel_queue(
    config: ServerConfig, store: SqliteStore | PostgresStore, deliverer: ChannelDeliverer
) -> FanoutQueue:
    """The channel fan-out queue: JetStream when ``nats_url`` is set, else in-process."""
    if not config.nats_url:
        return LocalFanout(store, deliverer)
    from tidings.server.bus.jetstream import JetStreamFanout

    node = config.nats_node or f"{socket.gethostname()}-{config.port}"
    return JetStreamFanout(
        config.nats_url,
        store,
        deliverer,
        node=re.sub(r"[^A-Za-z0-9_-]", "_", node),
        stream=config.nats_stream,
    )


def _node_bus(config: ServerConfig) -> LocalBus | NatsBus:
    """The bus: over NATS between several nodes when ``nats_url`` is set, else in-process."""
    if not config.nats_url:
        return LocalBus()
    from tidings.server.bus.nats import NatsBus

    return NatsBus(config.nats_url, node=config.node_id or f"{socket.gethostname()}-{config.port}")


def create_app(config: ServerConfig) -> Litestar:
    """The Litestar application alone: the REST routes, the WebSocket route and the lifespan
    (what test clients drive in-process)."""
    app = create_asgi(config).app
    assert isinstance(app, Litestar)
    return app


def create_asgi(config: ServerConfig) -> ws.WebSocketFirst:
    """What the server runs: the Litestar application, and in front of it the WebSocket
    gateway, with the request ids and the connections gauge the application's middleware
    gives every other request."""
    store, admin_store, quota_ledger = _stores(config)
    metrics = Metrics()
    store.commit_observer = metrics.observe_commit
    node_bus = _node_bus(config)
    # knows which devices are live (here, or on another node), for push wake-ups
    bus = PresenceBus(node_bus, remote=getattr(node_bus, "live_elsewhere", None))
    if not isinstance(node_bus, LocalBus):
        node_bus.on_remote_connect = bus.connected_elsewhere
    delivery = DeliveryService(
        store,
        bus,
        member_cap=config.member_cap,
        require_e2ee=config.require_e2ee,
        limiter=SendLimiter(
            SendRates(
                device_rate=config.send_rate_device,
                device_burst=config.send_burst_device,
                account_rate=config.send_rate_account,
                account_burst=config.send_burst_account,
                bytes_rate=config.send_bytes_per_second,
                bytes_burst=config.send_burst_bytes,
            )
        ),
        quota_bytes=config.account_quota_bytes,
        retention_days=config.envelope_retention_days,
    )
    push_providers = build_providers(config)
    dispatcher = PushDispatcher(
        push_providers.by_platform,
        queue_size=config.push_queue_size,
        workers=config.push_workers,
        max_attempts=config.push_max_attempts,
        base_backoff=config.push_retry_base,
        on_drop_registration=lambda registration, reason: push.drop_registration(
            registration, reason
        ),
    )
    push = PushService(
        store,
        bus,
        dispatcher,
        load_or_create_hint_key(config.data_dir / "push" / "hint_key"),
        coalesce_seconds=config.push_coalesce_seconds,
        silent_interval=config.push_silent_interval,
        platforms=push_providers.by_platform,
        vapid_public_key=push_providers.vapid_public_key,
        allow_http_endpoints=config.webpush_allow_http,
        allow_private_endpoints=config.push_allow_private_endpoints,
    )
    delivery.push = push
    delivery.social = SocialService(store, bus)  # receipt privacy, blocking, typing, profiles
    # every node consumes every post: it hands them to its own sockets only, never over NATS
    local = node_bus if isinstance(node_bus, LocalBus) else node_bus.local
    queue = _channel_queue(config, store, ChannelDeliverer(store, local))
    channel_queue: FanoutQueue | None = queue
    delivery.channels = ChannelService(
        store,
        queue,
        push=ChannelPush(store, push, interval=config.channel_push_interval),
    )
    blob_store = build_blob_store(config)
    media = MediaService(blob_store.store, store, quota_ledger)
    auth = Authenticator(store)
    keys = KeyDirectory(store, claims_per_minute=config.key_claims_per_minute)
    delivery.group_adds = GroupAddGate(
        store,
        per_adder_per_minute=config.group_adds_per_minute,
        per_target_per_minute=config.group_adds_per_target_per_minute,
    )

    async def removed(account_id: str, device_ids: list[int]) -> None:
        # The rows are gone: forget the cached tokens, then close the live connections.
        for device_id in device_ids:
            auth.forget(account_id, device_id)
            await bus.revoke(account_id, device_id)
        log.info("account %s: devices %s removed", account_id, device_ids)

    keys.on_removed = removed
    metrics.instrument_delivery(delivery)
    metrics.push_counters(lambda: chain(services, "push", "dispatcher", "counters"))
    admin = AdminService(
        admin_store,
        store,
        auth,
        bus,
        connections=lambda: int(metrics.connections._value.get()),
    )
    admin.on_removed = removed
    provisioning = Provisioner(
        store,
        per_minute=config.provisioning_per_minute,
        ttl_seconds=config.provisioning_ttl_seconds,
        max_devices=config.max_devices_per_account,
    )
    services = http.Services(
        config=config,
        store=store,
        delivery=delivery,
        auth=auth,
        keys=keys,
        provisioning=provisioning,
        account_limiter=RateLimiter(config.accounts_per_minute),
        media=media,
        admin=admin,
        push=push,
        vault=VaultService(
            store,
            VaultKeys.load(config.data_dir),
            quota_bytes=config.vault_quota_bytes,
            max_devices=config.max_devices_per_account,
            backoff=Backoff(free=config.vault_free_attempts, cap=config.vault_backoff_cap_seconds),
        ),
    )
    gateway = ws.Gateway(
        auth,
        delivery,
        MeteredBus(bus, metrics),
        idle_timeout=config.idle_timeout,
        queue_frames=config.send_queue_frames,
        queue_bytes=config.send_queue_bytes,
    )

    async def purge_forever() -> None:
        while True:
            try:
                purged = await delivery.purge_expired(config.pending_ttl_days)
            except Exception:
                log.exception("purging expired pending entries failed")
            else:
                if purged:
                    log.info("purged %d expired pending entries", purged)
            try:
                # Envelopes acked by every member device, or past the retention period: in
                # bounded batches, each one transaction of the writer.
                collected = await delivery.collect_envelopes()
            except Exception:
                log.exception("collecting stored envelopes failed")
            else:
                if collected:
                    log.info("collected %d stored envelopes", collected)
            await asyncio.sleep(PURGE_INTERVAL)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await store.open()
        if not isinstance(node_bus, LocalBus):
            await node_bus.start()  # presence known before the first connection
        if channel_queue is not None:
            await channel_queue.start()  # resumes the fan-out from the log
        purger = asyncio.create_task(purge_forever())
        media_gc = asyncio.create_task(
            media.collect_forever(config.media_gc_interval_seconds, blob_store.rotate)
        )
        await push.dispatcher.start()
        log.info("serving data from %s", config.data_dir)
        try:
            yield
        finally:
            purger.cancel()
            media_gc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            with contextlib.suppress(asyncio.CancelledError):
                await media_gc
            await push.stop()
            await push.dispatcher.stop()
            await push_providers.aclose()
            if channel_queue is not None:
                await channel_queue.stop()
            if not isinstance(node_bus, LocalBus):
                await node_bus.stop()
            await store.close()

    app = Litestar(
        route_handlers=[
            http.router(services),
            ws.endpoint(gateway),
            *http.blob_routes(blob_store.serve),
            *ops.handlers(
                metrics,
                admin.store.pending_depth,
                admin.store.ready,
                config.metrics_allow_ips,
                metrics_here=not config.metrics_listen,
            ),
        ],
        lifespan=[
            lifespan,
            operations_lifespan(config, admin, metrics, http.EXCEPTION_HANDLERS),
        ],
        middleware=[RequestIds, metrics.middleware],
        exception_handlers=http.EXCEPTION_HANDLERS,
        request_max_body_size=MAX_FRAME_BYTES,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )
    return ws.WebSocketFirst(app, RequestIds(metrics.middleware(gateway)))
