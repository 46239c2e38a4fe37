"""A backup export holds the wrapped vault key (each passphrase guess can be tested against
it offline), so it is written 0600 whatever the umask, and never through a symbolic link left
at its temporary name."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tidings.client.backup.service import BackupService

from .helpers import fast_enrol


def _service() -> BackupService:
    service = object.__new__(BackupService)
    enrolment = fast_enrol()
    keys = SimpleNamespace(vault_key=enrolment.vault_key, wrapped=enrolment.wrapped)

    async def upload_now(*_: Any, **__: Any) -> None:
        return None

    async def listing() -> dict[str, Any]:
        return {}

    service._require = lambda: keys  # type: ignore[method-assign,assignment,return-value]
    service.upload_now = upload_now  # type: ignore[method-assign,assignment]
    service.api = SimpleNamespace(list=listing)  # type: ignore[assignment]
    service.account = SimpleNamespace(account_id="acct")  # type: ignore[assignment]
    return service


async def test_an_export_is_0600_and_does_not_follow_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "backup.tidings"
    (tmp_path / "backup.tidings.part").symlink_to(victim)
    old = os.umask(0o022)
    try:
        assert await _service().export(target) == 0
    finally:
        os.umask(old)
    assert victim.read_bytes() == b"precious"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_size > 0
