"""Running the server under uvicorn."""

from __future__ import annotations

import gc
import logging
import os
import resource
import stat
from pathlib import Path

import uvicorn

from tidings.protocol import MAX_FRAME_BYTES
from tidings.protocol.routes import BLOB_PATH
from tidings.server import logjson, logredact, tls
from tidings.server.app import create_asgi
from tidings.server.config import ServerConfig
from tidings.server.forwarded import ForwardedHeaders, TrustedProxies
from tidings.server.guard import guarded_http_protocol
from tidings.server.ws.uvicorn_protocol import LeanWebSocketProtocol

#: Largest WebSocket message uvicorn passes on. Above the protocol's MAX_FRAME_BYTES on purpose:
#: a device connection answers an oversized frame with a typed error instead of uvicorn closing;
#: bigger ones close the connection (1009), which bounds what one peer can make us buffer.
WS_MAX_SIZE = 2 * MAX_FRAME_BYTES

log = logging.getLogger(__name__)


def configure_logging(level: str, log_format: str = "text") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if log_format == "json":
        logjson.use_json(logging.getLogger().handlers)
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


#: What the data directory and the database files may allow: their owner only.
DIR_MODE = 0o700
FILE_MODE = 0o600


def prepare_data_dir(config: ServerConfig) -> None:
    """Create the data directory (0700) and the database file (0600) if they do not exist yet;
    SQLite gives its -wal and -shm files the database's permissions. Existing ones that let
    others in are left as they are, with a warning."""
    config.data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    database = config.database_path
    fd = os.open(database, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(fd)
    warn_if_open(config)


def database_files(config: ServerConfig) -> list[Path]:
    database = config.database_path
    return [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))]


def warn_if_open(config: ServerConfig) -> list[Path]:
    """Log a warning for the data directory and each database file whose permissions let
    anybody but the owner in; returns them."""
    wide: list[Path] = []
    for path, allowed in [(config.data_dir, DIR_MODE)] + [
        (f, FILE_MODE) for f in database_files(config)
    ]:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & ~allowed:
            wide.append(path)
            log.warning(
                "%s has mode %o: others may read the server's data; chmod %o it",
                path,
                mode,
                allowed,
            )
    return wide


def serve(config: ServerConfig) -> None:
    """Serve until SIGINT/SIGTERM."""
    configure_logging(config.log_level, config.log_format)
    raise_open_files_limit()
    prepare_data_dir(config)
    app: object = create_asgi(config)
    trusted = TrustedProxies(config.forwarded_allow_ips)
    if trusted:
        app = ForwardedHeaders(app, trusted, config.forwarded_header)
    server_config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        # said, not guessed: WebSocketFirst returns its coroutine from a plain __call__
        interface="asgi3",
        host=config.host,
        port=config.port,
        # uvloop where it is installed (not on Windows), asyncio otherwise
        loop="auto",
        ssl_certfile=config.tls_cert or None,
        ssl_keyfile=config.tls_key or None,
        # uvicorn's httptools protocol with header and body deadlines (tidings.server.guard).
        http=guarded_http_protocol(
            header_timeout=config.header_timeout,
            body_timeout=config.body_timeout,
            max_pending=config.max_pending_connections,
            # part PUTs of the local blob store: megabytes, on slow phone links too
            long_body_timeout=config.blob_body_timeout,
            long_body_paths=(BLOB_PATH + "/",),
        ),
        # Forwarded headers are ForwardedHeaders' job, believed only from configured proxies
        # (uvicorn's own default believes X-Forwarded-For from 127.0.0.1).
        proxy_headers=False,
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
    server_config.load()
    if server_config.ssl is not None:
        # SIGHUP loads a renewed certificate into the listener's own SSL context.
        tls.reload_on_sighup(server_config.ssl, config.tls_cert, config.tls_key)
    collect_less()
    uvicorn.Server(server_config).run()


#: Container allocations (net) between two young-generation collections; CPython's default is
#: 700, which a server handling thousands of frames a second reaches every few messages.
GC_YOUNG_THRESHOLD = 20_000


def collect_less() -> None:
    """Spend less of the event loop on the cyclic garbage collector: what startup built (the
    application, its routes and schemas, every imported module) lives as long as the process,
    so it is frozen out of the collections, and the young generation is collected after more
    allocations. Most of what a message allocates is freed by reference counting anyway."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
