"""The E2EE commands of the ``tidings`` CLI against a real server: linking a device with a
printed code, approving it, safety numbers, verification, and identity-change lines in
``history``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest


def _command() -> list[str]:
    script = Path(sys.executable).parent / "tidings"
    if script.exists():
        return [str(script)]
    found = shutil.which("tidings")
    return [found] if found else [sys.executable, "-m", "tidings"]


TIDINGS = _command()


def run(profile: Path, *args: str) -> Any:
    cmd = [*TIDINGS, *args, "--profile", str(profile), "--json"]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=90, check=False, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, f"{args} failed: {result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(240)
def test_link_approve_safety_verify(server: Any, tmp_path: Path) -> None:
    alice, bob, laptop = tmp_path / "alice", tmp_path / "bob", tmp_path / "laptop"
    run(alice, "account", "create", "--server", server.url, "alice")
    run(bob, "account", "create", "--server", server.url, "bob")

    cmd = [*TIDINGS, "device", "link", "--server", server.url, "--profile", str(laptop)]
    linking = subprocess.Popen(
        [*cmd, "--name", "laptop", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert linking.stdout is not None
        first = json.loads(linking.stdout.readline())
        code = first["link_code"]
        approved = run(alice, "device", "approve", code, "--name", "laptop")
        out, err = linking.communicate(timeout=60)
        assert linking.returncode == 0, err
        linked = json.loads(out.strip().splitlines()[-1])
        assert linked["device_id"] == approved["device_id"]
        assert linked["username"] == "alice"
    finally:
        if linking.poll() is None:
            linking.kill()

    sent = run(laptop, "send", "@bob", "from the laptop")
    assert sent["status"] in ("sent", "delivered", "read")
    deadline = time.monotonic() + 30
    while True:
        run(bob, "sync", "--for", "1")
        page = run(bob, "history", "@alice")
        if any(m["body"] == "from the laptop" for m in page["messages"]):
            break
        assert time.monotonic() < deadline, "bob never got the laptop's message"

    numbers = {
        run(alice, "safety", "@bob")["safety_number"],
        run(laptop, "safety", "@bob")["safety_number"],
        run(bob, "safety", "@alice")["safety_number"],
    }
    assert len(numbers) == 1 and len(numbers.pop()) == 60
    assert run(alice, "verify", "@bob")["verified"] is True
    assert run(alice, "safety", "@bob")["verified"] is True
    assert run(alice, "verify", "@bob", "--undo")["verified"] is False
