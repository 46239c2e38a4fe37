"""An export is all of the vault or nothing: a page the server listed but no longer returns
(removed between the listing and the fetch) ends the export with a typed error and leaves no
file behind, and the next export, once the server is consistent again, is whole."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.integration.store_inspection import inspector

from tidings.client.errors import ClientError

from .kit import PASSPHRASE, pair, wait_texts


@pytest.mark.timeout(180)
async def test_a_page_missing_after_the_listing_fails_the_export_cleanly(
    server: Any, tmp_path: Path
) -> None:
    alice, bob = await pair(tmp_path, server.url)
    try:
        conv = await alice.open_direct("bob")
        for i in range(5):
            await alice.send_text(conv.id, f"kept {i}")
        await wait_texts(bob, conv.id, 5)
        await alice.enable_backup(PASSPHRASE)
        await alice.backup_now()

        api = alice._backup.api
        real_fetch = api.fetch
        removed: list[str] = []
        store = inspector(server)

        async def lose_a_page_then_fetch(page_ids: Sequence[str]) -> dict[str, Any]:
            # as if the page were removed right after the export listed it
            victims = [page_id for page_id in page_ids if page_id.startswith("h/")]
            if victims and not removed:
                # the row moves out of the page's way (and comes back below)
                moved = store.update(
                    "vault_pages", {"page_id": victims[0] + "~"}, page_id=victims[0]
                )
                assert moved == 1
                removed.append(victims[0])
            return await real_fetch(page_ids)

        api.fetch = lose_a_page_then_fetch  # type: ignore[method-assign]
        target = tmp_path / "history.tidings"
        with pytest.raises(ClientError) as refused:
            await alice.export_backup(target)
        assert refused.value.code == "vault_incomplete"
        assert removed and removed[0] in str(refused.value)
        assert not target.exists()
        assert not target.with_name(target.name + ".part").exists()

        # The server is consistent again (the page is back): the next export is whole.
        api.fetch = real_fetch  # type: ignore[method-assign]
        assert store.update("vault_pages", {"page_id": removed[0]}, page_id=removed[0] + "~") == 1
        assert await alice.export_backup(target) > 0
        assert target.stat().st_size > 0
    finally:
        await alice.close()
        await bob.close()
