"""The lifespan part for operators, entered after the store is open: load the disabled
accounts, open the admin socket and, if configured, the separate metrics listener."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from tidings.server import ops
from tidings.server.admin.api import admin_app
from tidings.server.admin.service import AdminService
from tidings.server.config import ServerConfig
from tidings.server.listeners import side_listener
from tidings.server.metrics import Metrics


def operations_lifespan(
    config: ServerConfig,
    admin: AdminService,
    metrics: Metrics,
    exception_handlers: Any,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        await admin.start()
        async with contextlib.AsyncExitStack() as stack:
            if config.admin_socket:
                await stack.enter_async_context(
                    side_listener(
                        admin_app(admin, exception_handlers),
                        uds=config.data_dir / config.admin_socket,
                        name="admin API",
                    )
                )
            if config.metrics_listen:
                host, port = ops.parse_listen(config.metrics_listen)
                await stack.enter_async_context(
                    side_listener(
                        ops.metrics_app(metrics, admin.store.pending_depth),
                        host=host,
                        port=port,
                        name="metrics",
                    )
                )
            yield

    return lifespan
