"""Fixtures that run the real server as a subprocess (`python -m tidings.server`).

`server` gives a started :class:`ServerProcess` on a free loopback port with its data in a fresh
temporary directory; `server_factory(env=..., data_dir=..., start=...)` makes more of them, for
tests that need settings (e.g. ``TIDINGS_MEMBER_CAP``) or several servers. Every process is
stopped when the test ends, whatever happened.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

#: How long a server may take to answer /v1/health after being launched.
START_TIMEOUT = 20.0
#: How long `stop()` waits after SIGTERM before it falls back to SIGKILL.
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One `python -m tidings.server` subprocess bound to 127.0.0.1.

    The port and data directory are fixed at construction, so :meth:`restart` (or :meth:`start`
    after :meth:`kill`) brings the same server back with the same state. Its stdout and stderr
    go to ``data_dir / "server.log"`` (appended across restarts).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/v1/ws"
        self.log_path = data_dir / "server.log"
        self.env = dict(env or {})
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        """Launch the process and wait until GET /v1/health answers 200."""
        if self.running:
            raise RuntimeError("server already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable,
            "-m",
            "tidings.server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data",
            str(self.data_dir),
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last_error: Exception | None = None
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self._proc.returncode} while starting:\n"
                        + self.log_text()[-4000:]
                    )
                try:
                    if http.get(f"{self.url}/v1/health").status_code == 200:
                        return
                except httpx.HTTPError as exc:
                    last_error = exc
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"server not healthy after {START_TIMEOUT}s ({last_error!r}):\n"
            + self.log_text()[-4000:]
        )

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit (SIGKILL if it does not come)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would, and wait for the process to be gone."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and data directory."""
        self.stop()
        self.start()

    def __repr__(self) -> str:
        return f"ServerProcess(url={self.url!r}, data_dir={str(self.data_dir)!r})"


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Make servers: ``server_factory(env={"TIDINGS_MEMBER_CAP": "5"}, data_dir=None,
    start=True, extra_args=())``. All of them are killed at the end of the test."""
    made: list[ServerProcess] = []

    def make(
        *,
        env: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        start: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> ServerProcess:
        directory = data_dir if data_dir is not None else tmp_path_factory.mktemp("server")
        proc = ServerProcess(directory, env=env, extra_args=extra_args)
        made.append(proc)
        if start:
            proc.start()
        return proc

    try:
        yield make
    finally:
        for proc in made:
            proc.kill()


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    """A started server with default settings and an empty data directory."""
    return server_factory()
