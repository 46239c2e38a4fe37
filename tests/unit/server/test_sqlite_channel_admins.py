"""Reading a channel lists its owner and admins through an index, never by reading every
subscriber's row: each post, page of posts and channel list reads the channel, and one of
50,000 subscribers read 50,000 member rows every time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tidings.server.channels.store import ChannelAdmin
from tidings.server.store.sqlite import SqliteStore
from tidings.server.store.sqlite.channels import ADMINS_SQL


async def test_a_channels_admins_are_read_through_an_index_not_its_subscribers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tidings.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        for i in range(301):
            await store.create_account(
                account_id=f"a{i:03d}", username=f"u{i:03d}", device_name="d",
                token_key=f"k{i}", token_hash=b"h", now=1,
            )  # fmt: skip
        await store.create_channel("ch", "News", None, True, "", "a150", 1)
        for i in range(301):
            await store.subscribe("ch", f"a{i:03d}", 2)
        await store.set_role("ch", "a007", "admin", 3)
        record = await store.channel("ch")
        assert record is not None and record.subscribers == 301
        assert record.admins == (
            ChannelAdmin("a150", "u150", "owner"),
            ChannelAdmin("a007", "u007", "admin"),
        )
    finally:
        await store.close()
    db = sqlite3.connect(path)
    try:
        db.execute("ANALYZE")  # as the planner would see a long-lived database
        plan = [str(row[3]) for row in db.execute("EXPLAIN QUERY PLAN " + ADMINS_SQL, ("ch",))]
    finally:
        db.close()
    assert any("INDEX channel_members_by_role (channel=? AND role=?)" in step for step in plan), (
        plan
    )
