"""Everyday features in the client core: empty texts and non-emoji reactions refused, edits
and deletions applied in the store (history of edits, FTS index, receivers' checks), delete for
me, note to self's title, the unread separator."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from tests.unit.client.test_store import ME, PEER, C, fts_ids, get, incoming, receive

from tidings.client import ClientError
from tidings.client.core import engine
from tidings.client.features import edits
from tidings.client.features.validation import (
    QUICK_REACTIONS,
    EmptyMessage,
    check_emoji,
    check_text,
)
from tidings.client.graphemes import is_emoji
from tidings.client.store import NOTE_TO_SELF, LocalStore
from tidings.client.types import Account
from tidings.protocol import Envelope, rest
from tidings.protocol.content import (
    DELETE_WINDOW_MS,
    EDIT_WINDOW_MS,
    Delete,
    Edit,
    Reaction,
    encode_content,
)

HOUR = 3_600_000


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


def content_env(
    seq: int, content: Edit | Delete | Reaction, sender: str = PEER, ts: int = 0
) -> Envelope:
    return Envelope(
        conv=C,
        seq=seq,
        id=uuid.uuid4(),
        sender=sender,
        sender_device=1,
        ts=ts or 1000 + seq,
        payload=encode_content(content),
    )


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("body", ["", " ", "\n\t ", "\u3000"])
def test_empty_and_whitespace_texts_are_refused(body: str) -> None:
    with pytest.raises(EmptyMessage) as raised:
        check_text(body)
    assert raised.value.code == "empty_message"
    assert isinstance(raised.value, ClientError)


def test_a_text_over_the_limit_is_refused() -> None:
    with pytest.raises(ClientError) as raised:
        check_text("x" * 64_001)
    assert raised.value.code == "payload_too_large"


@pytest.mark.parametrize(
    "emoji", ["👍", "❤️", "👍🏽", "🇩🇪", "👩‍👩‍👧‍👦", "#️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "😂", *QUICK_REACTIONS]
)
def test_single_emoji_are_reactions(emoji: str) -> None:
    assert check_emoji(emoji) == emoji


@pytest.mark.parametrize(
    "text", ["lol", "a", "", "👍👍", "🇩", "1", "#", "a\ufe0f", "☺\ufe0e", "👍 "]
)
def test_anything_else_is_not_a_reaction(text: str) -> None:
    assert not is_emoji(text)
    with pytest.raises(ClientError) as raised:
        check_emoji(text)
    assert raised.value.code == "bad_emoji"


def test_the_quick_bar_has_six_emoji() -> None:
    assert len(QUICK_REACTIONS) == 6 and all(is_emoji(e) for e in QUICK_REACTIONS)


# ----------------------------------------------------------------------------- edits


def test_an_edit_from_the_sender_replaces_the_text_and_keeps_the_history(
    store: LocalStore,
) -> None:
    original = incoming(1, "lunch at noon")
    receive(store, original)
    receive(store, content_env(2, Edit(target=original.id, body="lunch at one")))
    message = get(store, original.id)
    assert message.body == "lunch at one" and message.edited and message.edited_at == 1002
    assert [(e.body, e.at) for e in edits.history(store.db, original.id)] == [
        ("lunch at noon", original.ts)
    ]
    pk = store.db.execute("SELECT pk FROM messages WHERE id = ?", (original.id.hex,)).fetchone()
    assert fts_ids(store, "one") == {pk[0]} and fts_ids(store, "noon") == set()


def test_edits_from_anyone_else_or_too_late_are_dropped(store: LocalStore) -> None:
    original = incoming(1, "mine")
    receive(store, original)
    receive(store, content_env(2, Edit(target=original.id, body="forged"), sender="mallory"))
    late = original.ts + EDIT_WINDOW_MS + 1
    receive(store, content_env(3, Edit(target=original.id, body="late"), ts=late))
    receive(store, content_env(4, Edit(target=uuid.uuid4(), body="nothing")))
    message = get(store, original.id)
    assert message.body == "mine" and not message.edited


def test_a_deletion_for_everyone_leaves_a_line_and_nothing_else(store: LocalStore) -> None:
    original = incoming(1, "secret plans")
    receive(store, original)
    receive(store, content_env(2, Edit(target=original.id, body="secret plans v2")))
    receive(store, content_env(3, Reaction(target=original.id, emoji="👍"), sender=ME))
    receive(store, content_env(4, Delete(target=original.id)))
    message = get(store, original.id)
    assert message.deleted and message.body == edits.DELETED_BODY
    assert message.reactions == () and not message.edited
    assert edits.history(store.db, original.id) == []
    assert fts_ids(store, "secret") == set() and fts_ids(store, "plans") == set()
    (raw,) = store.db.execute("SELECT body FROM messages WHERE id = ?", (original.id.hex,))
    assert raw == ("",)
    # a deleted message cannot be edited back
    receive(store, content_env(5, Edit(target=original.id, body="back")))
    assert get(store, original.id).deleted


def test_a_late_or_foreign_deletion_is_dropped(store: LocalStore) -> None:
    original = incoming(1, "stays")
    receive(store, original)
    receive(store, content_env(2, Delete(target=original.id), sender="mallory"))
    late = original.ts + DELETE_WINDOW_MS + 1
    receive(store, content_env(3, Delete(target=original.id), ts=late))
    assert get(store, original.id).body == "stays"


def test_own_edits_apply_when_they_are_stored_for_sending(store: LocalStore) -> None:
    mine = uuid.uuid4()
    text = encode_content(Edit())  # payload bytes do not matter to the store
    from tidings.protocol.content import Text

    store.apply([engine.StoreOutgoing(mine, C, text, Text(body="typo"), 5000)])
    edit_id = uuid.uuid4()
    store.apply([engine.StoreOutgoing(edit_id, C, text, Edit(target=mine, body="fixed"), 6000)])
    message = get(store, mine)
    assert message.body == "fixed" and message.edited
    assert store.message(edit_id) is None  # an edit is no message of its own


def test_delete_for_me_removes_the_row_and_a_replay_stays_out(store: LocalStore) -> None:
    original = incoming(1, "forget this")
    receive(store, original)
    assert edits.delete_for_me(store.db, original.id) == C
    assert store.message(original.id) is None and fts_ids(store, "forget") == set()
    receive(store, original)  # the same envelope again
    assert store.message(original.id) is None
    assert edits.delete_for_me(store.db, uuid.uuid4()) is None


# ----------------------------------------------------------------------------- conversations


def test_a_direct_conversation_of_one_member_is_note_to_self(store: LocalStore) -> None:
    store.save_conversation(
        rest.Conversation(
            id="self",
            kind="direct",
            title="",
            members=[rest.Member(ME, "alice", "member")],
            last_seq=0,
            created_at=10,
        )
    )
    conv = store.conversation("self")
    assert conv is not None and conv.note_to_self and conv.title == NOTE_TO_SELF
    other = store.conversation(C)
    assert other is not None and not other.note_to_self and other.title == "bob"
