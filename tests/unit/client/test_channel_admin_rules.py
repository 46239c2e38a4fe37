"""The client's channel rules around admins, without a server: the subscriber cursor right
below an account id finds exactly that account in a list ordered like the server's (byte order,
``account_id > start``), and only a failed own post waits to be posted again."""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.client.test_channels_client import ME, info

from tidings.client import channel_store as cs
from tidings.client.channels import _just_below
from tidings.client.store import LocalStore
from tidings.client.types import Account


def first_after(ids: list[str], start: str) -> str | None:
    """The server's page of one: the smallest id above ``start`` in byte order."""
    above = sorted(i for i in ids if i.encode() > start.encode())
    return above[0] if above else None


def test_the_cursor_below_an_id_finds_that_id_and_nothing_else() -> None:
    rng = random.Random(7)
    server_made = ["a" + uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(300)]
    odd = ["", "0", "a", "a0", "a00", "a/", "b", "~", "a" + "f" * 32, "a" + "0" * 32]
    odd += [
        "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 6))) for _ in range(300)
    ]
    ids = sorted(set(server_made + [o for o in odd if o]))
    for target in ids:
        assert first_after(ids, _just_below(target)) == target
        others = [i for i in ids if i != target]
        found = first_after(others, _just_below(target))
        assert found != target and (found is None or found > target)
    assert _just_below("") == ""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "tidings.db")
    s.set_account(Account(ME, "me", 1, "http://127.0.0.1:1"))
    s.account_id = ME
    yield s
    s.close()


def own_post(store: LocalStore, n: int) -> uuid.UUID:
    post_id = uuid.UUID(int=n)
    store.db.execute(
        "INSERT INTO channel_posts VALUES (?, 'ch1', NULL, ?, 1, ?, 0, x'00', ?, 1, 1)",
        (post_id.hex, ME, n, bytes(64)),
    )
    store.db.execute(
        "INSERT INTO messages (id, conv_id, seq, ord, sender_id, sender_device, is_own, kind,"
        " body, status, created_at) VALUES (?, 'ch1', NULL, ?, ?, 1, 1, 'text', 'x', 'sending',"
        " ?)",
        (post_id.hex, n, ME, n),
    )
    return post_id


def test_only_a_failed_own_post_is_posted_again(store: LocalStore) -> None:
    db = store.db
    with store.transaction():
        cs.save_info(db, info([(ME, "owner")]), ME, now=0)
        sent, refused, gone = own_post(store, 1), own_post(store, 2), own_post(store, 3)
        waiting = own_post(store, 4)
        assert cs.accept(db, sent, 1, 10)
        cs.fail(db, refused, "only the channel's admins may post")
        cs.fail(db, gone, "only the channel's admins may post")
        db.execute("DELETE FROM messages WHERE id = ?", (gone.hex,))  # deleted for me
    with store.transaction():
        assert not cs.resend(db, sent)  # in the log
        assert not cs.resend(db, waiting)  # still waiting
        assert not cs.resend(db, gone)  # deleted on this device: stays unposted
        assert not cs.resend(db, uuid.UUID(int=99))
        assert cs.resend(db, refused)
        assert not cs.resend(db, refused)  # once
    assert [p.id for _, p in cs.pending(db)] == [refused, waiting]  # in the order written
    (message,) = store.messages([refused])
    assert message.status.value == "sending" and message.fail_reason is None
