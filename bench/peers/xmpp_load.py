"""Load worker for the Prosody peer: the 1:1 workload of :mod:`bench.loadgen` over XMPP.

Runs in ``bench/.peers/xmpp-venv`` (slixmpp) and speaks the same stdin/stdout protocol as
``python -m bench.loadgen --worker``: a :class:`~bench.loadgen.LoadSpec` line (``mode="xmpp"``,
``url`` = ``host:port``, each pair's tokens are the sender's and receiver's JIDs), ``ready``,
``go <monotonic start>``, then a :class:`~bench.loadgen.LoadResult` line.

Each pair keeps ``window`` ``<message type="chat">`` stanzas in flight; XMPP has no server
ack for a message (without XEP-0198), so a message leaves the window when the receiver has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import msgspec
import slixmpp

from bench.loadgen import Histogram, LoadResult, LoadSpec, PairSpec
from bench.peers.prosody import PASSWORD


class _Device(slixmpp.ClientXMPP):  # type: ignore[misc]  # slixmpp ships no type hints
    def __init__(self, jid: str) -> None:
        super().__init__(
            jid,
            PASSWORD,
            plugin_config={
                "feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}
            },
        )
        # loopback only: no TLS, plaintext stream with SCRAM
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.enable_plaintext = True
        self.online = asyncio.Event()
        self.add_event_handler("session_start", self._session_start)

    async def _session_start(self, _event: object) -> None:
        self.send_presence()
        self.online.set()


class _Pair:
    def __init__(self, spec: LoadSpec, pair: PairSpec, meter: _Meter) -> None:
        self.sender = _Device(pair.sender_token + "/load")
        self.receiver = _Device(pair.receiver_token + "/load")
        self.to = pair.receiver_token + "/load"
        self.window = asyncio.Semaphore(spec.window)
        self.sent_at: dict[str, float] = {}
        self.meter = meter
        self.counter = 0
        self.receiver.add_event_handler("message", self._on_message)

    def _on_message(self, msg: slixmpp.Message) -> None:
        now = time.monotonic()
        sent = self.sent_at.pop(msg["body"].split(" ", 1)[0], None)
        if sent is None:
            return
        self.window.release()
        meter = self.meter
        if meter.measure_from <= now < meter.stop_at:
            meter.completed += 1
            meter.latency.record(now - sent)

    async def send_loop(self, pad: str) -> None:
        while True:
            await self.window.acquire()
            now = time.monotonic()
            if now >= self.meter.stop_at:
                return
            self.counter += 1
            key = f"m{self.counter}"
            self.sent_at[key] = now
            self.sender.send_message(mto=self.to, mbody=f"{key} {pad}", mtype="chat")


class _Meter:
    def __init__(self) -> None:
        self.measure_from = float("inf")
        self.stop_at = float("inf")
        self.completed = 0
        self.latency = Histogram()


async def _connect(device: _Device, host: str, port: int) -> None:
    device.connect(host, port)
    async with asyncio.timeout(60):
        await device.online.wait()


async def main() -> None:
    loop = asyncio.get_running_loop()
    spec = msgspec.json.decode(sys.stdin.buffer.readline(), type=LoadSpec)
    host, port = spec.url.rsplit(":", 1)
    meter = _Meter()
    pairs = [_Pair(spec, p, meter) for p in spec.pairs]
    t0 = time.monotonic()
    for pair in pairs:
        await asyncio.gather(
            _connect(pair.receiver, host, int(port)), _connect(pair.sender, host, int(port))
        )
    connect_seconds = time.monotonic() - t0
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    start_at = float(line.split()[1])
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    meter.measure_from = start_at + spec.warmup
    meter.stop_at = meter.measure_from + spec.duration
    pad = "x" * max(0, spec.payload_bytes - 12)
    senders = [asyncio.ensure_future(p.send_loop(pad)) for p in pairs]
    await asyncio.sleep(max(0.0, meter.measure_from - time.monotonic()))
    cpu0 = time.process_time()
    await asyncio.sleep(max(0.0, meter.stop_at - time.monotonic()))
    cpu = time.process_time() - cpu0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            await asyncio.gather(*senders)
    for task in senders:
        task.cancel()
    for pair in pairs:
        pair.sender.disconnect()
        pair.receiver.disconnect()
    result = LoadResult(
        completed=meter.completed,
        measured_seconds=spec.duration,
        latency=meter.latency.to_json(),
        cpu_seconds=cpu,
        connect_seconds=connect_seconds,
        errors=[],
    )
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
