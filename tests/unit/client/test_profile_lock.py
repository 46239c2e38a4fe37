"""One process per profile: a second process waits briefly, then says the profile is in use
(with the holder's pid); in one process the lock is shared. Real processes: the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tidings.client import Client, profilelock
from tidings.client.errors import ProfileInUse
from tidings.client.store import LocalStore
from tidings.client.types import Account

TIDINGS = [sys.executable, "-m", "tidings.command"]
HOLD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from tidings.client import Client

    async def main() -> None:
        client = await Client.open(Path(sys.argv[1]))
        print("held", flush=True)
        await asyncio.sleep(float(sys.argv[2]))
        await client.close()

    asyncio.run(main())
    """
)


def _profile(path: Path) -> Path:
    path.mkdir(parents=True)
    store = LocalStore(path / "tidings.db")
    store.set_account(Account("acc-alice", "alice", 1, "http://127.0.0.1:9"))
    store.close()
    (path / "token").write_text("key.secret")
    return path


def _hold(profile: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(profile), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def _search(profile: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run(
        [*TIDINGS, "search", "--profile", str(profile), "hello"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - start


def test_a_second_process_is_told_who_holds_the_profile(tmp_path: Path) -> None:
    profile = _profile(tmp_path / "p")
    holder = _hold(profile, 30)
    try:
        done, took = _search(profile)
        assert done.returncode != 0
        assert "profile_in_use" in done.stderr and f"process {holder.pid}" in done.stderr
        assert took >= profilelock.WAIT
    finally:
        holder.kill()
        holder.wait()
    done, _ = _search(profile)  # the OS dropped the killed holder's lock
    assert done.returncode == 0, done.stderr
    assert "no matches" in done.stdout


def test_a_second_process_waits_for_a_holder_that_is_finishing(tmp_path: Path) -> None:
    profile = _profile(tmp_path / "p")
    holder = _hold(profile, 0.8)
    try:
        done, _ = _search(profile)
        assert done.returncode == 0, done.stderr
    finally:
        holder.wait(10)


async def test_one_process_shares_the_lock_and_suspend_lets_go(tmp_path: Path) -> None:
    profile = _profile(tmp_path / "p")
    first = await Client.open(profile)
    second = await Client.open(profile)  # same process: shared
    await second.close()
    assert profilelock.holder(profile) == os.getpid()
    probe = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; "
        "from tidings.client import profilelock as l; l.acquire(Path(sys.argv[1]), 0.2)",
    ]
    taken = subprocess.run(  # noqa: ASYNC221 - the other process, briefly
        [*probe, str(profile)], capture_output=True, text=True, check=False
    )
    assert "ProfileInUse" in taken.stderr
    first.suspend()  # the app paused: the push service may take the profile meanwhile
    freed = subprocess.run(  # noqa: ASYNC221
        [*probe, str(profile)], capture_output=True, text=True, check=False
    )
    assert freed.returncode == 0, freed.stderr
    assert await first.resume(wait=2.0)  # nobody wrote: the same client goes on
    await first.close()
    with pytest.raises(ProfileInUse):  # a fresh holder after close is another story
        holder = _hold(profile, 30)
        try:
            profilelock.acquire(profile, wait=0.1)
        finally:
            holder.kill()
            holder.wait()
