"""Extra listeners beside the main one, in the same process and event loop: the admin API on a
Unix socket (:mod:`tidings.server.admin`) and, when ``metrics_listen`` is set, ``/metrics`` on
its own address. Each is a small uvicorn server started and stopped by the main application's
lifespan, so it lives exactly as long as the store it reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

#: Longest Unix socket path the kernel takes (sun_path is 108 bytes on Linux, with the NUL).
MAX_SOCKET_PATH = 100


class _Quiet(uvicorn.Server):
    """A uvicorn server that leaves the signals to the main one (which stops it through the
    lifespan) and runs no lifespan of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def side_listener(
    app: Any, *, uds: Path | None = None, host: str = "", port: int = 0, name: str
) -> AsyncIterator[None]:
    """Serve ``app`` on the Unix socket ``uds`` (mode 0600) or on ``host:port`` for as long as
    the context is open."""
    if uds is not None:
        if len(str(uds)) > MAX_SOCKET_PATH:
            log.warning("%s: socket path %s is too long for a Unix socket; not started", name, uds)
            yield
            return
        _remove(uds)  # a socket left by a server that was killed
    # Bound here, 0600 from its first moment: given ``uds``, uvicorn would chmod it 0666 and
    # leave it open to every local user until our chmod (a connection made then stays open).
    sock = _bind_private(uds) if uds is not None else None
    config = uvicorn.Config(
        app,
        fd=sock.fileno() if sock is not None else None,
        host=host or "127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
    server = _Quiet(config)
    task = asyncio.create_task(server.serve(), name=f"tidings-{name}")
    while not server.started and not task.done():
        await asyncio.wait({task}, timeout=0.01)
    if task.done():
        if sock is not None:
            sock.close()
        task.result()  # a bind failure: raise it, the server does not start half-way
    log.info("%s listening on %s", name, uds if uds is not None else f"{host}:{port}")
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if sock is not None:
            sock.close()
        if uds is not None:
            _remove(uds)


def _bind_private(path: Path) -> socket.socket:
    """A Unix socket bound at ``path`` with mode 0600 from the start (the umask covers the
    bind; it only ever narrows what other threads create meanwhile)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return sock


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
