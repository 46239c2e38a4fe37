"""Running the server under uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from tidings.server.app import create_app
from tidings.server.config import ServerConfig

#: Largest WebSocket message uvicorn passes on. Above the protocol's MAX_FRAME_BYTES on purpose:
#: our gateway answers an oversized frame with a typed error instead of uvicorn closing.
WS_MAX_SIZE = 4 * 1024 * 1024


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve(config: ServerConfig) -> None:
    """Serve until SIGINT/SIGTERM."""
    configure_logging(config.log_level)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=WS_MAX_SIZE,
        # Liveness is the protocol's job (Ping frames, idle timeout), not WebSocket pings.
        ws_ping_interval=None,
        lifespan="on",
        log_config=None,
        log_level=config.log_level,
        access_log=config.log_level == "debug",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
