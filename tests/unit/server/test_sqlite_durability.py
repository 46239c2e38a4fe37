"""``sqlite_synchronous``: FULL by default (an Accepted survives a power cut), NORMAL on request,
from the setting to the writer's connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tidings.server import app as app_module
from tidings.server.config import ConfigError, ServerConfig
from tidings.server.store.sqlite import SqliteStore


async def writer_synchronous(store: SqliteStore) -> int:
    def q(conn: sqlite3.Connection) -> int:
        value: int = conn.execute("PRAGMA synchronous").fetchone()[0]
        return value

    return await store._write(q)


@pytest.mark.parametrize(("setting", "expected"), [(None, 2), ("full", 2), ("normal", 1)])
async def test_the_setting_reaches_the_writer_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None, expected: int
):
    env = {"TIDINGS_SQLITE_SYNCHRONOUS": setting} if setting else {}
    config = ServerConfig.load({"data_dir": tmp_path}, env=env)
    made: list[SqliteStore] = []

    class Recorded(SqliteStore):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(self)

    monkeypatch.setattr(app_module, "SqliteStore", Recorded)
    app_module.create_app(config)
    (store,) = made
    await store.open()
    try:
        assert await writer_synchronous(store) == expected  # 2 = FULL, 1 = NORMAL
    finally:
        await store.close()


def test_the_setting_is_checked():
    assert ServerConfig().sqlite_synchronous == "full"
    assert ServerConfig.load(
        {}, env={"TIDINGS_SQLITE_SYNCHRONOUS": "NORMAL"}
    ).sqlite_synchronous == ("normal")
    with pytest.raises(ConfigError, match="sqlite_synchronous"):
        ServerConfig.load({}, env={"TIDINGS_SQLITE_SYNCHRONOUS": "off"})
    with pytest.raises(ValueError):
        SqliteStore(Path("x.sqlite3"), synchronous="off")
