"""The physical ceiling: a bare ``websockets`` relay driven by the Tidings load generator.

No storage, no auth, no decoding: a receiver connects to ``/recv/<pair>``, a sender to
``/send/<pair>``; each frame from a sender is forwarded untouched to its paired receiver and a
small fixed ack goes back to the sender. Whatever Tidings does on top of this costs throughput.

``python -m bench.relay`` measures it and prints JSON; ``--serve --port P`` only runs the relay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.loadgen import (
    LOOPBACK,
    RELAY_ACK,
    PairSpec,
    ServerProcess,
    free_port,
    install_uvloop,
    raise_nofile,
    run_load,
)

#: Defaults of the 1:1 workload, shared with the Tidings run so the ratio is like for like.
PAIRS = 32
WINDOW = 16


async def _serve(port: int) -> None:
    receivers: dict[str, ServerConnection] = {}

    async def handler(ws: ServerConnection) -> None:
        _, role, pair = ws.request.path.split("/", 2) if ws.request else ("", "", "")
        if role == "recv":
            receivers[pair] = ws
            try:
                await ws.wait_closed()
            finally:
                if receivers.get(pair) is ws:
                    del receivers[pair]
            return
        ack = RELAY_ACK
        try:
            while True:
                data = await ws.recv(decode=False)
                receiver = receivers.get(pair)
                if receiver is not None:
                    await receiver.send(data)
                await ws.send(ack)
        except ConnectionClosed:
            return

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, LOOPBACK, port, compression=None, ping_interval=None, max_queue=256):
        await stop


def relay_server(port: int, log_dir: Path) -> ServerProcess:
    argv = [sys.executable, "-m", "bench.relay", "--serve", "--port", str(port)]
    return ServerProcess("relay", argv, log_dir / "relay.log", cwd=Path(__file__).parent.parent)


def measure(
    pairs: int = PAIRS,
    window: int = WINDOW,
    warmup: float = 1.0,
    duration: float = 5.0,
    processes: int = 1,
    log_dir: Path | None = None,
) -> dict[str, object]:
    """Start the relay, drive it, stop it; the load report as a dict."""
    port = free_port()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="tidings-relay-"))
    with relay_server(port, log_dir) as server:
        server.wait_tcp(port)
        specs = [PairSpec(conv=str(i)) for i in range(pairs)]
        report = run_load(
            "relay",
            f"ws://{LOOPBACK}:{port}",
            specs,
            window,
            warmup,
            duration,
            processes=processes,
            server_pid=server.pid,
        )
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description="bare websockets relay: the ceiling")
    parser.add_argument("--serve", action="store_true", help="only run the relay")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    if args.serve:
        raise_nofile()
        install_uvloop()
        asyncio.run(_serve(args.port))
        return
    result = measure(args.pairs, args.window, duration=args.duration, processes=args.processes)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
