"""Profiles, blocking, typing and receipt times in the client core: the profile seal
(tidings.crypto.profile), the typing throttle and expiry (features/typing.py), display names
from received profile keys and fetched profiles in every name the store gives out, a blocked
account's messages dropped on arrival, and message details with the times watermarks moved."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from tests.unit.client.test_store import ME, PEER, C, get, incoming, opened, receive

from tidings.client.core import engine
from tidings.client.features import profiles
from tidings.client.features.everyday import EverydayFeatures
from tidings.client.features.social import SocialFeatures
from tidings.client.features.typing import IDLE_AFTER, SEND_EVERY, TYPING_EXPIRES, TypingTracker
from tidings.client.store import LocalStore
from tidings.client.types import Account
from tidings.crypto.profile import (
    PAD_BUCKET,
    ProfileData,
    ProfileError,
    new_profile_key,
    open_profile,
    seal_profile,
)
from tidings.protocol import Envelope, rest
from tidings.protocol.content import ProfileKey, Text, encode_content

KEY = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    s = LocalStore(tmp_path / "tidings.db")
    s.set_account(Account(ME, "alice", 1, "http://server"))
    s.save_conversation(
        rest.Conversation(
            id=C,
            kind="direct",
            title="",
            members=[rest.Member(ME, "alice", "member"), rest.Member(PEER, "bob", "member")],
            last_seq=0,
            created_at=10,
        )
    )
    return s


def key_env(seq: int, key: bytes = KEY, sender: str = PEER) -> Envelope:
    return Envelope(
        conv=C,
        seq=seq,
        id=uuid.uuid4(),
        sender=sender,
        sender_device=1,
        ts=1000 + seq,
        payload=encode_content(ProfileKey(key=key)),
    )


# ----------------------------------------------------------------------------- the seal


def test_a_profile_opens_only_with_its_key_account_and_version() -> None:
    key = new_profile_key()
    data = ProfileData(name="Bob Builder", about="can we fix it", avatar=b"\xff\xd8jpeg")
    sealed = seal_profile(key, "a1", 3, data)
    assert open_profile(key, "a1", 3, sealed) == data
    for wrong in ((new_profile_key(), "a1", 3), (key, "a2", 3), (key, "a1", 4)):
        with pytest.raises(ProfileError):
            open_profile(wrong[0], wrong[1], wrong[2], sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(ProfileError):
        open_profile(key, "a1", 3, tampered)
    # padded: a short and a longer name seal to the same size
    short = seal_profile(key, "a1", 1, ProfileData(name="Al"))
    longer = seal_profile(key, "a1", 1, ProfileData(name="Alexandra Longname-Smith"))
    assert len(short) == len(longer) == 1 + 12 + PAD_BUCKET + 16


def test_profile_limits() -> None:
    with pytest.raises(ValueError):
        seal_profile(KEY, "a1", 1, ProfileData(name="x" * 65))
    with pytest.raises(ValueError):
        seal_profile(KEY, "a1", 1, ProfileData(about="x" * 281))
    with pytest.raises(ValueError):
        seal_profile(KEY, "a1", 1, ProfileData(avatar=b"x" * (64 * 1024 + 1)))
    with pytest.raises(ValueError):
        seal_profile(b"short", "a1", 1, ProfileData())


# ----------------------------------------------------------------------------- typing


def test_typing_is_sent_at_once_then_every_three_seconds_and_off_when_idle() -> None:
    t = TypingTracker()
    assert t.keystroke(C, 0.0)
    assert not t.keystroke(C, 1.0)
    assert not t.keystroke(C, SEND_EVERY - 0.1)
    assert t.keystroke(C, SEND_EVERY)  # still typing: refreshed
    assert t.next_wakeup() == SEND_EVERY + IDLE_AFTER
    assert t.idle(SEND_EVERY + IDLE_AFTER - 0.1) == []
    assert t.idle(SEND_EVERY + IDLE_AFTER) == [C]  # off after 5 s without a key
    assert not t.stop(C)  # already off
    assert t.keystroke(C, 20.0)
    assert t.stop(C)  # sending the message stops it
    assert t.next_wakeup() is None


def test_others_typing_expires_without_a_refresh() -> None:
    t = TypingTracker()
    assert t.heard(C, PEER, True, 0.0)  # shown: an event
    assert not t.heard(C, PEER, True, 3.0)  # a refresh: nothing new to show
    assert t.typing_in(C) == [PEER]
    assert t.expired(3.0 + TYPING_EXPIRES - 0.1) == []
    assert t.expired(3.0 + TYPING_EXPIRES) == [(C, PEER)]
    assert t.typing_in(C) == []
    assert t.heard(C, PEER, True, 10.0)
    assert t.heard(C, PEER, False, 11.0)  # an explicit stop
    assert not t.heard(C, PEER, False, 12.0)
    t.heard(C, PEER, True, 13.0)
    assert t.clear() == [(C, PEER)]


# ----------------------------------------------------------------------------- names


def test_display_names_come_from_fetched_profiles(store: LocalStore) -> None:
    receive(store, incoming(1, "hi"))
    (conv,) = store.conversations()
    assert conv.title == "bob"
    store.apply([opened(C, [key_env(2)]), engine.AdvanceCursor(C, 2)])
    assert profiles.key_of(store.db, PEER) == KEY  # taken in, no message row
    assert [m.kind for m in store.history(C, None, 10).messages] == ["text"]
    assert profiles.to_fetch(store.db, due_only=True) == [PEER]
    profiles.save_profile(store.db, PEER, KEY, 1, ("Bob Builder", "", b""))
    assert profiles.to_fetch(store.db, due_only=True) == []
    (conv,) = store.conversations()
    assert conv.title == "Bob Builder"
    assert {m.username: m.name for m in conv.members} == {"alice": "alice", "bob": "Bob Builder"}
    (first,) = store.history(C, None, 10).messages
    assert first.sender_name == "Bob Builder"
    # a profile that no longer opens (the key was rotated away from us): the username again
    profiles.forget_fields(store.db, PEER)
    assert get(store, first.id).sender_name == "bob"


def test_own_profile_key_from_another_device_is_adopted(store: LocalStore) -> None:
    store.apply([opened(C, [key_env(1, sender=ME)]), engine.AdvanceCursor(C, 1)])
    assert profiles.own_key(store.db) == (KEY, 0)


def test_an_own_profile_key_message_makes_no_row(store: LocalStore) -> None:
    changes = store.apply([engine.StoreOutgoing(uuid.uuid4(), C, b"", ProfileKey(key=KEY), 5)])
    assert changes.added == [] and store.history(C, None, 10).messages == ()


def test_sharing_skips_conversations_with_blocked_members(store: LocalStore) -> None:
    assert profiles.shareable(store.db, ME) == [C]
    assert profiles.needs_key(store.db, C, KEY)
    profiles.mark_shared(store.db, C, KEY)
    assert not profiles.needs_key(store.db, C, KEY)
    assert profiles.needs_key(store.db, C, bytes(32))  # rotated: shared again
    profiles.set_blocked(store.db, PEER, True)
    assert profiles.shareable(store.db, ME) == []
    assert profiles.has_blocked_member(store.db, C)


# ----------------------------------------------------------------------------- blocking


class _Social(SocialFeatures):
    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self.account = Account(ME, "alice", 1, "http://server")
        self.background: list[object] = []

    def _in_background(self, work):  # type: ignore[no-untyped-def]
        work.close()
        self.background.append(work)


def test_a_blocked_accounts_messages_are_dropped_on_arrival(store: LocalStore) -> None:
    profiles.set_blocked(store.db, PEER, True)
    mine = incoming(2, "mine", sender=ME)
    envs = (incoming(1, "from a blocked account"), mine)
    changes = store.apply([opened(C, envs), engine.AdvanceCursor(C, 2)])
    assert len(changes.added) == 2
    _Social(store)._social_applied(changes, synced=False)
    assert changes.added == [mine.id]
    assert [m.body for m in store.history(C, None, 10).messages] == ["mine"]
    # it never comes back (a replay of the same envelope is ignored)
    receive(store, envs[0])
    assert [m.body for m in store.history(C, None, 10).messages] == ["mine"]


def test_received_messages_share_our_key_once_we_have_one(store: LocalStore) -> None:
    social = _Social(store)
    changes = store.apply([opened(C, [incoming(1)]), engine.AdvanceCursor(C, 1)])
    social._social_applied(changes, synced=False)
    assert social.background == []  # no profile: nothing to share
    profiles.set_own_key(store.db, KEY, 1)
    changes = store.apply([opened(C, [incoming(2)]), engine.AdvanceCursor(C, 2)])
    social._social_applied(changes, synced=True)
    assert len(social.background) == 2  # share the key, check profiles after a sync


# ----------------------------------------------------------------------------- details


class _Details(EverydayFeatures):
    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self.account = Account(ME, "alice", 1, "http://server")

    def _check_open(self) -> None:
        pass


async def test_message_details_show_when_the_watermarks_passed(store: LocalStore) -> None:
    msg_id = uuid.uuid4()
    store.apply([engine.StoreOutgoing(msg_id, C, b"", Text(body="hi"), 5)])
    store.apply([engine.MarkSent(msg_id, C, 1, 6, engine.MessageStatus.SENT)])
    store.apply([engine.StoreWatermark(C, PEER, 1, 0)])
    profiles.record_times(store.db, C, PEER, 7_000, None)
    (receipt,) = (await _Details(store).message_details(msg_id)).receipts
    assert (receipt.delivered, receipt.read) == (True, False)
    assert (receipt.delivered_at, receipt.read_at) == (7_000, None)
    store.apply([engine.StoreWatermark(C, PEER, 1, 1)])
    profiles.record_times(store.db, C, PEER, 6_000, 9_000)  # times only move up
    (receipt,) = (await _Details(store).message_details(msg_id)).receipts
    assert (receipt.delivered_at, receipt.read_at) == (7_000, 9_000)
