"""Killing the CLI (SIGKILL) in the middle of an upload leaves the vault consistent — every
page it lists opens, the manifest never names a missing page — and the next run resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client
from tidings.client.backup.pages import open_history_page
from tidings.client.backup.recovery import recover_account
from tidings.client.backup.uploader import MANIFEST_PAGE_ID, open_manifest, parse_history_id
from tidings.client.backup.vault_client import VaultApi
from tidings.client.rest import Rest

from .kit import PASSPHRASE, comparable, everything, pair, wait_texts

SERVER_ENV = {"TIDINGS_SEND_RATE_DEVICE": "2000", "TIDINGS_SEND_BURST_DEVICE": "5000"}


async def cli(*args: str, kill_after: float | None = None) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidings", *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL if kill_after is not None else asyncio.subprocess.PIPE,
    )  # fmt: skip
    if kill_after is None:
        _, err = await proc.communicate()
        if proc.returncode:
            print(f"tidings {' '.join(args[:2])} exited {proc.returncode}:\n{err.decode()}")
        return await proc.wait()
    try:
        return await asyncio.wait_for(proc.wait(), kill_after)
    except TimeoutError:
        os.kill(proc.pid, signal.SIGKILL)
        return await proc.wait()


async def check_consistent(url: str, token: str, vault_key: bytes, account_id: str) -> None:
    rest = Rest(url, token)
    try:
        api = VaultApi(rest)
        listing = await api.list()
        pages = await api.fetch(sorted(listing))
        for page_id, page in pages.items():
            parsed = parse_history_id(page_id)
            if parsed is not None:
                open_history_page(vault_key, account_id, parsed[0], parsed[1], page.sealed)
        if MANIFEST_PAGE_ID in pages:
            manifest = open_manifest(vault_key, account_id, pages[MANIFEST_PAGE_ID].sealed)
            for page_id, generation in manifest.items():
                assert listing[page_id][0] >= generation
    finally:
        await rest.aclose()


@pytest.mark.timeout(300)
async def test_sigkill_mid_upload_leaves_the_vault_consistent_and_resumes(
    server: Any, tmp_path: Path
) -> None:
    alice, bob = await pair(tmp_path, server.url)
    conv = await alice.open_direct("bob")
    for i in range(1500):
        await alice.send_text(conv.id, f"kill test {i} " + "x" * 200)
    await wait_texts(bob, conv.id, 1500, within=200)
    await asyncio.sleep(1.0)
    before = comparable(await everything(alice, conv.id))
    await alice.close()
    await bob.close()
    secret = tmp_path / "pass"
    secret.write_text(PASSPHRASE + "\n")
    profile = str(tmp_path / "alice")
    # Killed in the middle of its first upload. On a busy machine the kill can come before
    # enable stored the vault key on the device (the passphrase's key derivation alone takes a
    # while): then backup is not on and the user enables it again (the server's enrolment is
    # adopted), later the next time.
    for kill_after in (1.2, 2.4, 4.8, None):
        await cli("backup", "enable", "--profile", profile, "--passphrase-file", str(secret),
                  kill_after=kill_after)  # fmt: skip
        alice = await Client.open(tmp_path / "alice")
        enabled = alice._backup.keys is not None
        await alice.close()
        if enabled:
            break
    for delay in (0.3, 0.6, 0.9):
        await cli("backup", "now", "--profile", profile, kill_after=delay)
        alice = await Client.open(tmp_path / "alice")
        keys = alice._backup.keys
        token = (tmp_path / "alice" / "token").read_text().strip()
        account_id = alice.account.account_id
        await alice.close()
        if keys is not None:
            await check_consistent(server.url, token, keys.vault_key, account_id)
    assert await cli("backup", "now", "--profile", profile) == 0
    phone = await recover_account(server.url, tmp_path / "phone", "alice", PASSPHRASE)
    try:
        assert comparable(await everything(phone, conv.id)) == before
    finally:
        await phone.close()
