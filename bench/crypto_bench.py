"""tidings.crypto throughput next to libsignal 0.72.1, measured in the same run.

    python -m bench.crypto_bench [--quick] [--repeats N] [--no-libsignal]

Workloads (100-byte messages):

* 1:1 one-way and alternating: encrypt + decrypt per second, the session record serialized
  and deserialized around every message on both sides (what a client's database does; our
  ``InMemorySessionStore`` and the Node peer's store both keep records serialized);
* session setup: process a prekey bundle, encrypt the first message, decrypt it as a PreKey
  message (bundle key generation not timed), for PQXDH (v4) and X3DH (v3);
* Sender Keys: group encrypt per second and group decrypt per second, records serialized
  around every message.

For context it also times one XEdDSA verification alone (libsodium's Ed25519 verify, what
every group message received and every prekey bundle processed pays), which bounds how fast a
sender-key decrypt can be.

libsignal runs the same workloads inside the Node peer (tests/interop/peer.mjs, test-only)
and times them there, so the pipe is not counted. Each number is the best of ``--repeats``
runs (the machine is shared), ours and libsignal's back to back in every repeat. Writes
``bench/results/crypto-<timestamp>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidings.crypto import (
    IdentityKeyPair,
    KeyPair,
    PreKeyBundle,
    PreKeySignalMessage,
    ProtocolAddress,
    SignalMessage,
    message_decrypt_prekey,
    message_decrypt_signal,
    message_encrypt,
    process_prekey_bundle,
)
from tidings.crypto.records import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from tidings.crypto.sender_keys import (
    InMemorySenderKeyStore,
    SenderKeyDistributionMessage,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)
from tidings.crypto.stores import (
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LIBSIGNAL_VERSION = "0.72.1"
MESSAGE = bytes(100)


class Device:
    def __init__(self, name: str, registration_id: int) -> None:
        self.address = ProtocolAddress(name, 1)
        self.identity = IdentityKeyPair.generate()
        self.identity_store = InMemoryIdentityKeyStore(self.identity, registration_id)
        self.sessions = InMemorySessionStore()
        self.prekeys = InMemoryPreKeyStore()
        self.signed = InMemorySignedPreKeyStore()
        self.kyber = InMemoryKyberPreKeyStore()

    def bundle(self, kyber: bool) -> PreKeyBundle:
        now = int(time.time() * 1000)
        pk = PreKeyRecord.generate(1)
        spk = SignedPreKeyRecord.generate(2, self.identity, now)
        self.prekeys.save_pre_key(1, pk)
        self.signed.save_signed_pre_key(2, spk)
        kpk = KyberPreKeyRecord.generate(3, self.identity, now) if kyber else None
        if kpk is not None:
            self.kyber.save_kyber_pre_key(3, kpk)
        return PreKeyBundle(
            registration_id=self.identity_store.get_local_registration_id(),
            device_id=1,
            pre_key_id=1,
            pre_key_public=pk.public_key(),
            signed_pre_key_id=2,
            signed_pre_key_public=spk.public_key(),
            signed_pre_key_signature=spk.signature,
            identity_key=self.identity.identity_key,
            kyber_pre_key_id=None if kpk is None else 3,
            kyber_pre_key_public=None if kpk is None else kpk.public_key(),
            kyber_pre_key_signature=None if kpk is None else kpk.signature,
        )

    def encrypt_to(self, other: Device, plaintext: bytes) -> SignalMessage | PreKeySignalMessage:
        return message_encrypt(plaintext, other.address, self.sessions, self.identity_store)

    def decrypt_from(self, other: Device, wire: bytes, prekey: bool) -> bytes:
        if prekey:
            return message_decrypt_prekey(
                PreKeySignalMessage.deserialize(wire),
                other.address,
                self.sessions,
                self.identity_store,
                self.prekeys,
                self.signed,
                self.kyber,
            )
        return message_decrypt_signal(
            SignalMessage.deserialize(wire), other.address, self.sessions, self.identity_store
        )


def _send(sender: Device, receiver: Device, plaintext: bytes) -> None:
    message = sender.encrypt_to(receiver, plaintext)
    wire = message.serialize()
    out = receiver.decrypt_from(sender, wire, isinstance(message, PreKeySignalMessage))
    assert out == plaintext


def ours_setup(n: int, kyber: bool) -> float:
    """Seconds per session setup (bundle processed, first message encrypted and decrypted)."""
    total = 0.0
    for i in range(n):
        alice, bob = Device(f"a{i}", 1), Device(f"b{i}", 2)
        bundle = bob.bundle(kyber)
        t0 = time.perf_counter()
        process_prekey_bundle(bundle, bob.address, alice.sessions, alice.identity_store)
        _send(alice, bob, MESSAGE)
        total += time.perf_counter() - t0
    return total / n


def ours_session(n: int, alternating: bool) -> float:
    """Messages (encrypt + decrypt) per second."""
    alice, bob = Device("alice", 1), Device("bob", 2)
    process_prekey_bundle(bob.bundle(True), bob.address, alice.sessions, alice.identity_store)
    _send(alice, bob, MESSAGE)
    _send(bob, alice, MESSAGE)
    t0 = time.perf_counter()
    for i in range(n):
        if alternating and i % 2:
            _send(bob, alice, MESSAGE)
        else:
            _send(alice, bob, MESSAGE)
    return n / (time.perf_counter() - t0)


def ours_sender_keys(n: int) -> tuple[float, float]:
    """(group encrypts per second, group decrypts per second)."""
    sender = ProtocolAddress("sender", 1)
    dist = uuid.uuid4()
    mine, theirs = InMemorySenderKeyStore(), InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(sender, dist, mine)
    process_sender_key_distribution_message(
        sender, SenderKeyDistributionMessage.deserialize(skdm.serialize()), theirs
    )
    group_decrypt(group_encrypt(mine, sender, dist, MESSAGE).serialize(), theirs, sender)
    t0 = time.perf_counter()
    wires = [group_encrypt(mine, sender, dist, MESSAGE).serialize() for _ in range(n)]
    enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    for wire in wires:
        group_decrypt(wire, theirs, sender)
    dec = time.perf_counter() - t0
    return n / enc, n / dec


def ours_verify_us(n: int) -> float:
    """Microseconds per XEdDSA verification of a group-message-sized body, each signature new
    (as in ``ours_sender_keys``) under one signing key (its Edwards form cached, as there)."""
    signer = KeyPair.generate()
    bodies = [i.to_bytes(4, "big") + bytes(146) for i in range(n)]
    signed = [(body, signer.calculate_signature(body)) for body in bodies]
    public = signer.public_key
    t0 = time.perf_counter()
    for body, signature in signed:
        if not public.verify_signature(body, signature):
            raise AssertionError("signature does not verify")
    return (time.perf_counter() - t0) / n * 1e6


@dataclass
class Row:
    workload: str
    unit: str
    ours: float
    libsignal: float | None
    higher_is_better: bool = True

    def ratio(self) -> float | None:
        """Ours relative to libsignal: > 1 means we are faster."""
        if self.libsignal is None or self.ours == 0:
            return None
        if self.higher_is_better:
            return self.ours / self.libsignal
        return self.libsignal / self.ours


def _best(repeats: int, run: Callable[[], float], higher_is_better: bool = True) -> float:
    values = [run() for _ in range(repeats)]
    return max(values) if higher_is_better else min(values)


def _best_of_both(
    repeats: int,
    ours: Callable[[], float],
    theirs: Callable[[], float] | None,
    higher_is_better: bool = True,
) -> tuple[float, float | None]:
    """The best of ``repeats`` runs of each side, the two sides back to back in every repeat:
    on a shared machine the load changes by the minute, and this way both see the same."""
    pick = max if higher_is_better else min
    mine: list[float] = []
    other: list[float] = []
    for _ in range(repeats):
        mine.append(ours())
        if theirs is not None:
            other.append(theirs())
    return pick(mine), (pick(other) if other else None)


def _libsignal_peer() -> Any:
    sys.path.insert(0, str(ROOT / "tests" / "interop"))
    from libsignal_peer import LibsignalPeer

    return LibsignalPeer(LIBSIGNAL_VERSION)


def run(quick: bool, repeats: int, with_libsignal: bool) -> dict[str, Any]:
    n_msg = 500 if quick else 3000
    n_setup = 10 if quick else 40
    n_sk = 500 if quick else 3000
    peer = _libsignal_peer() if with_libsignal else None
    rows: list[Row] = []
    context: dict[str, float] = {}
    try:

        def lib(cmd: str, **args: Any) -> dict[str, Any]:
            assert peer is not None
            result: dict[str, Any] = peer.call(cmd, **args)
            return result

        def lib_session(mode: str, keep_objects: bool = False) -> float:
            res = lib("bench_session", n=n_msg, mode=mode, keep_objects=keep_objects)
            return n_msg / float(res["seconds"])

        def lib_setup_ms(kyber: bool) -> float:
            return float(lib("bench_setup", n=n_setup, kyber=kyber)["seconds"]) / n_setup * 1000

        def ours_setup_ms(kyber: bool) -> float:
            return ours_setup(n_setup, kyber) * 1000

        for label, alternating in (("one-way", False), ("alternating", True)):
            mode = "alternating" if alternating else "oneway"
            ours, theirs = _best_of_both(
                repeats,
                functools.partial(ours_session, n_msg, alternating),
                None if peer is None else functools.partial(lib_session, mode),
            )
            rows.append(Row(f"1:1 encrypt+decrypt, {label}", "msg/s", ours, theirs))
        for label, kyber in (("PQXDH v4", True), ("X3DH v3", False)):
            ours, theirs = _best_of_both(
                repeats,
                functools.partial(ours_setup_ms, kyber),
                None if peer is None else functools.partial(lib_setup_ms, kyber),
                False,
            )
            rows.append(Row(f"session setup, {label}", "ms", ours, theirs, False))
        if peer is not None:
            for mode in ("oneway", "alternating"):
                context[f"libsignal_{mode}_records_as_objects_msg_per_s"] = _best(
                    repeats, functools.partial(lib_session, mode, True)
                )
        # Each repeat runs ours, the verification alone (so that the share printed below
        # compares numbers taken at the same moment) and libsignal's, back to back.
        sk_runs: list[tuple[float, float, float]] = []
        lib_sk: list[dict[str, Any]] = []
        for _ in range(repeats):
            sk_runs.append((*ours_sender_keys(n_sk), ours_verify_us(n_sk)))
            if peer is not None:
                lib_sk.append(lib("bench_sender_keys", n=n_sk))
        sk = [(e, d) for e, d, _ in sk_runs]
        best_decrypt = max(sk_runs, key=lambda run: run[1])
        context["tidings_xeddsa_verify_us"] = best_decrypt[2]
        context["tidings_xeddsa_verify_share_of_decrypt"] = best_decrypt[2] * best_decrypt[1] / 1e6
        rows.append(
            Row(
                "sender key encrypt",
                "msg/s",
                max(e for e, _ in sk),
                max(n_sk / r["encrypt_seconds"] for r in lib_sk) if lib_sk else None,
            )
        )
        rows.append(
            Row(
                "sender key decrypt",
                "msg/s",
                max(d for _, d in sk),
                max(n_sk / r["decrypt_seconds"] for r in lib_sk) if lib_sk else None,
            )
        )
    finally:
        if peer is not None:
            peer.close()
    return {
        "benchmark": "crypto",
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": quick,
        "repeats": repeats,
        "messages": n_msg,
        "setups": n_setup,
        "sender_key_messages": n_sk,
        "message_bytes": len(MESSAGE),
        "libsignal_version": LIBSIGNAL_VERSION if with_libsignal else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "context": context,
        "rows": [
            {
                "workload": r.workload,
                "unit": r.unit,
                "tidings": r.ours,
                "libsignal": r.libsignal,
                "ratio": r.ratio(),
            }
            for r in rows
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    version = result["libsignal_version"] or "-"
    lines = [
        "| workload (100-byte messages) | tidings.crypto "
        f"| libsignal {version} | tidings / libsignal |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        unit = r["unit"]

        def fmt(v: float | None, unit: str = unit) -> str:
            if v is None:
                return "-"
            return f"{v:,.2f} {unit}" if unit == "ms" else f"{v:,.0f} {unit}"

        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['workload']} | {fmt(r['tidings'])} | {fmt(r['libsignal'])} | {ratio} |")
    lines.append("")
    ctx = result.get("context") or {}
    if "libsignal_oneway_records_as_objects_msg_per_s" in ctx:
        lines.append(
            "For context, libsignal with session records kept as objects (never serialized): "
            f"{ctx['libsignal_oneway_records_as_objects_msg_per_s']:,.0f} msg/s one-way, "
            f"{ctx['libsignal_alternating_records_as_objects_msg_per_s']:,.0f} msg/s alternating."
        )
    if "tidings_xeddsa_verify_us" in ctx:
        lines.append(
            "One XEdDSA verification alone (libsodium's Ed25519 verify), timed right after the "
            f"best sender-key run: {ctx['tidings_xeddsa_verify_us']:.1f} µs, "
            f"{ctx['tidings_xeddsa_verify_share_of_decrypt']:.0%} of a tidings sender-key decrypt."
        )
    lines.append(
        "Ratio > 1: tidings faster (for setup, the inverse time ratio). Records serialized "
        f"around every message on both sides; best of {result['repeats']}; "
        f"load average at the end {result['load_average'][0]:.1f} on {result['cpus']} CPUs."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument("--repeats", type=int, default=None, help="best of N (default 3, quick 1)")
    parser.add_argument("--no-libsignal", action="store_true", help="skip the Node comparison")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    result = run(args.quick, repeats, not args.no_libsignal)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"crypto-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
