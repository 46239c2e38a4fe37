"""Running the server under uvicorn."""

from __future__ import annotations

import logging
import resource

import uvicorn

from tidings.protocol import MAX_FRAME_BYTES
from tidings.server import logredact
from tidings.server.app import create_app
from tidings.server.config import ServerConfig
from tidings.server.ws.uvicorn_protocol import LeanWebSocketProtocol

#: Largest WebSocket message uvicorn passes on. Above the protocol's MAX_FRAME_BYTES on purpose:
#: a device connection answers an oversized frame with a typed error instead of uvicorn closing;
#: bigger ones close the connection (1009), which bounds what one peer can make us buffer.
WS_MAX_SIZE = 2 * MAX_FRAME_BYTES

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Every record, whichever library logs it, passes through these handlers: no token, key,
    # secret or frame payload is written at any level.
    logredact.install()


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (every connection is a file
    descriptor) and log it; returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft < hard:
        target = hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, hard, exc)
        else:
            soft = target
    log.info("open files limit (RLIMIT_NOFILE): %d (hard %d)", soft, hard)
    return soft


def serve(config: ServerConfig) -> None:
    """Serve until SIGINT/SIGTERM."""
    configure_logging(config.log_level)
    raise_open_files_limit()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        loop="uvloop",
        http="httptools",
        # uvicorn's "websockets-sansio" protocol, lighter per idle connection.
        ws=LeanWebSocketProtocol,
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
