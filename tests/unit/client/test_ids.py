"""Ids of own messages are time-ordered UUIDs (version 7): they sort by when they were made,
and are as unique as random ones."""

from __future__ import annotations

import time
import uuid

from tidings.client.ids import new_message_id


def test_an_id_is_a_version_7_uuid_of_its_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = new_message_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after
    assert new_message_id(1_700_000_000_123).int >> 80 == 1_700_000_000_123


def test_ids_sort_by_time_as_the_store_keys_them() -> None:
    ids = [new_message_id(1_700_000_000_000 + n) for n in range(200)]
    assert sorted(ids, key=lambda i: i.hex) == ids  # the store's text key: append order
    assert sorted(ids) == ids


def test_ids_of_one_millisecond_are_unique() -> None:
    ids = {new_message_id(1_700_000_000_000) for _ in range(20_000)}
    assert len(ids) == 20_000
