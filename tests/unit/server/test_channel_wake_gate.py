"""Channel push's per-device limit: one wake per device per interval, and the memory it holds
is bounded by the devices woken within the last interval."""

from __future__ import annotations

from tidings.server.channels.push import WakeGate


def test_one_wake_per_device_per_interval() -> None:
    gate = WakeGate(interval=300.0)
    assert gate.admit(("a", 1), now=0.0)
    assert not gate.admit(("a", 1), now=299.9)
    assert gate.admit(("a", 2), now=10.0)  # another device of the same account
    assert gate.admit(("a", 1), now=300.0)
    assert not gate.admit(("a", 1), now=599.0)


def test_devices_woken_long_ago_are_forgotten() -> None:
    gate = WakeGate(interval=300.0)
    for n in range(5_000):
        assert gate.admit(("old", n), now=0.0)
    # an interval later, a new crowd: the old devices hold nothing back any more, so they go
    for n in range(5_000):
        assert gate.admit(("new", n), now=400.0)
    assert len(gate) <= 5_000 + 1024
    # and forgetting changed no decision: an old device may be woken, a new one may not
    assert gate.admit(("old", 7), now=401.0)
    assert not gate.admit(("new", 7), now=401.0)
