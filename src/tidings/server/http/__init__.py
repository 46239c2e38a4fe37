"""The REST API under ``/v1``: one controller module per area, every route declared from
:mod:`tidings.protocol.routes` (a test checks the server registers exactly that table)."""

from __future__ import annotations

from litestar import Router
from litestar.handlers import ASGIRouteHandler

from tidings.server.http import (
    accounts,
    conversations,
    groups,
    keys,
    media,
    profiles,
    provisioning,
    settings,
)
from tidings.server.http import channels as channel_routes
from tidings.server.http import push as push_routes
from tidings.server.http import vault as vault_routes
from tidings.server.http.common import EXCEPTION_HANDLERS, Services, dependencies

__all__ = ["EXCEPTION_HANDLERS", "Services", "blob_routes", "router"]


def router(services: Services) -> Router:
    """Every REST handler, with ``services`` and the ``caller`` dependency provided."""
    return Router(
        path="/",
        route_handlers=[
            *accounts.HANDLERS,
            *conversations.HANDLERS,
            *groups.HANDLERS,
            *keys.HANDLERS,
            *provisioning.HANDLERS,
            *settings.HANDLERS,
            *media.HANDLERS,
            *push_routes.HANDLERS,
            *vault_routes.HANDLERS,
            *channel_routes.HANDLERS,
            *profiles.HANDLERS,
        ],
        dependencies=dependencies(services),
    )


def blob_routes(serve: media.BlobServer | None) -> list[ASGIRouteHandler]:
    """The local blob store's raw endpoint (protocol.routes.BLOB_PATH), if this server serves
    blobs itself (``serve``); none when they are in S3."""
    return [] if serve is None else [media.blob_endpoint(serve)]
