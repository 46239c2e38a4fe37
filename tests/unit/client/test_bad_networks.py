"""Clients over bad networks, without a server process: a sign-up retried after its answer
was lost (the server's store), a damaged profile database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tidings.cli.main import main
from tidings.client import Client, integrity
from tidings.client.errors import ProfileCorrupt
from tidings.client.store import LocalStore
from tidings.client.types import Account
from tidings.crypto import IdentityKeyPair
from tidings.server.auth import secret_hash
from tidings.server.store import Refused
from tidings.server.store.sqlite import SqliteStore


async def test_a_repeated_signup_with_the_same_token_gets_the_same_account(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "server.sqlite3")
    await store.open()
    try:
        first = dict(username="alice", device_name="primary", now=1)
        made = await store.create_account_once(
            account_id="a_1", token_key="k" * 16, token_hash=secret_hash("s" * 43), **first
        )
        # The answer was lost; the client asks again with the same token.
        again = await store.create_account_once(
            account_id="a_2", token_key="k" * 16, token_hash=secret_hash("s" * 43), **first
        )
        assert made == again == "a_1"
        device = await store.device_by_token_key("k" * 16)
        assert device is not None and device.device_id == 1
        with pytest.raises(Refused) as taken:  # someone else's token: the name is taken
            await store.create_account_once(
                account_id="a_3", token_key="x" * 16, token_hash=secret_hash("y" * 43), **first
            )
        assert taken.value.code == "username_taken"
    finally:
        await store.close()


def _profile(path: Path) -> Path:
    path.mkdir()
    (path / "token").write_text("k" * 16 + "." + "s" * 43)
    store = LocalStore(path / "tidings.db")
    store.set_account(Account("a_test", "alice", 1, "http://127.0.0.1:9"))
    store.keys.set_identity(IdentityKeyPair.generate())
    for n in range(300):
        store.db.execute("INSERT INTO users VALUES (?, ?)", (f"a_{n}", f"user{n}" * 20))
    store.close()
    return path


def _damage(db: Path) -> None:
    """Overwrite the middle of the file: a malformed image with a valid header."""
    data = bytearray(db.read_bytes())
    for i in range(4096, len(data) - 4096):
        data[i] = 0xA5
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["junk", "malformed"])
async def test_a_damaged_profile_is_reported_with_the_way_out(how: str, tmp_path: Path) -> None:
    profile = _profile(tmp_path / "p")
    db = profile / "tidings.db"
    if how == "junk":
        db.write_bytes(b"not a database at all\n" * 500)
    else:
        _damage(db)
    with pytest.raises(ProfileCorrupt) as err:
        await Client.open(profile)
    assert err.value.code == "profile_corrupt"
    assert f"mv {db} {db}.corrupt" in err.value.message
    assert "tidings device link" in err.value.message


def test_the_cli_says_the_profile_is_damaged_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = _profile(tmp_path / "p")
    (profile / "tidings.db").write_bytes(b"junk" * 1000)
    assert main(["history", "--profile", str(profile), "@bob"]) != 0
    err = capsys.readouterr().err
    assert "profile_corrupt" in err and "mv " in err and "Traceback" not in err


def test_a_locked_database_is_not_called_damaged(tmp_path: Path) -> None:
    profile = _profile(tmp_path / "p")
    with sqlite3.connect(profile / "tidings.db") as db:
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
    LocalStore(profile / "tidings.db").close()


async def test_damage_the_open_does_not_read_is_found_beside_it_and_refused_next_time(
    tmp_path: Path,
) -> None:
    profile = _profile(tmp_path / "p")
    db = profile / "tidings.db"
    data = bytearray(db.read_bytes())
    data[-8192:] = b"\xa5" * 8192  # the last pages: usernames, not read at start
    db.write_bytes(bytes(data))
    client = await Client.open(profile)  # the chat list is not kept waiting for the check
    await client.close()
    integrity.check_in_background(db, delay=0).join()
    assert integrity.marker(db).exists()
    with pytest.raises(ProfileCorrupt) as err:
        await Client.open(profile)
    assert f"mv {db} {db}.corrupt" in err.value.message
    # a good copy put back in its place: the check passes and the marker goes
    good = _profile(tmp_path / "q") / "tidings.db"
    db.write_bytes(good.read_bytes())
    client = await Client.open(profile)
    await client.close()
    assert not integrity.marker(db).exists()
    integrity.check_in_background(db, delay=0).join()
    assert not integrity.marker(db).exists()
