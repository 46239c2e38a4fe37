"""The chat list (client/chatlist.py): each conversation's last message and unread count
stay what the messages say through arrivals, own sends, edits, deletions, removals and read
marks; and the list is read from indexes, without a scan of the history."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

from tidings.client import chatlist
from tidings.client.core import engine
from tidings.client.core.opening import OpenedEnvelope, StoreOpened
from tidings.client.core.payload import open_payload
from tidings.client.features import edits
from tidings.client.store import LocalStore
from tidings.client.types import Account
from tidings.protocol import Envelope, rest
from tidings.protocol.content import Content, Delete, Edit, Reaction, Text, encode_content

ME = "me"
PEERS = ("bob", "carol")
CONVS = ("c1", "c2", "c3")


def _store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "tidings.db")
    store.set_account(Account(ME, "alice", 1, "http://server"))
    for conv in CONVS:
        members = [rest.Member(ME, "alice", "member")]
        members += [rest.Member(p, p, "member") for p in PEERS]
        store.save_conversation(
            rest.Conversation(
                id=conv, kind="group", title=conv, members=members, last_seq=0, created_at=1
            )
        )
    return store


def _expected(store: LocalStore) -> dict[str, tuple[str | None, int]]:
    """(last message id, unread count) of each conversation, from every row in Python."""
    read = dict(store.db.execute("SELECT id, read_upto FROM conversations"))
    last: dict[str, tuple[int, str]] = {}
    unread = dict.fromkeys(read, 0)
    for conv, mid, seq, ord_, is_own, kind in store.db.execute(
        "SELECT conv_id, id, seq, ord, is_own, kind FROM messages"
    ):
        if conv not in last or ord_ > last[conv][0]:
            last[conv] = (ord_, mid)
        if seq is not None and seq > read[conv] and not is_own and kind == "text":
            unread[conv] += 1
    return {conv: (last[conv][1] if conv in last else None, unread[conv]) for conv in read}


def _shown(store: LocalStore) -> dict[str, tuple[str | None, int]]:
    return {
        c.id: (c.last_message.id.hex if c.last_message else None, c.unread)
        for c in store.conversations()
    }


def test_last_message_and_unread_follow_every_change(tmp_path: Path) -> None:
    store = _store(tmp_path)
    rng = random.Random(11)
    seqs = dict.fromkeys(CONVS, 0)
    sent: dict[str, list[uuid.UUID]] = {c: [] for c in CONVS}  # own, still sending
    texts: list[tuple[str, uuid.UUID, str]] = []  # (conv, id, sender)
    ts = 1_000

    def arrive(conv: str, sender: str, content: Content, msg_id: uuid.UUID) -> None:
        nonlocal ts
        seqs[conv] += 1
        ts += 1
        env = Envelope(
            conv=conv,
            seq=seqs[conv],
            id=msg_id,
            sender=sender,
            sender_device=1,
            ts=ts,
            payload=encode_content(content),
        )
        opened = StoreOpened(conv, (OpenedEnvelope(env, open_payload(env.payload)),))
        store.apply([opened, engine.AdvanceCursor(conv, seqs[conv])])

    for step in range(400):
        conv = rng.choice(CONVS)
        action = rng.random()
        if action < 0.35:  # someone writes
            msg_id = uuid.uuid4()
            sender = rng.choice(PEERS)
            arrive(conv, sender, Text(body=f"hello {step}"), msg_id)
            texts.append((conv, msg_id, sender))
        elif action < 0.5:  # I write: stored as sending, last in its chat until accepted
            msg_id = uuid.uuid4()
            ts += 1
            text = Text(body=f"mine {step}")
            store.apply([engine.StoreOutgoing(msg_id, conv, encode_content(text), text, ts)])
            sent[conv].append(msg_id)
            texts.append((conv, msg_id, ME))
        elif action < 0.6 and sent[conv]:  # the server accepts my oldest
            seqs[conv] += 1
            msg_id = sent[conv].pop(0)
            status = engine.MessageStatus.SENT
            store.apply([engine.MarkSent(msg_id, conv, seqs[conv], ts, status)])
        elif action < 0.7 and texts:  # an edit or a deletion by the author
            target_conv, target, author = rng.choice(texts)
            change: Content = (
                Edit(target=target, body=f"edited {step}")
                if rng.random() < 0.5
                else Delete(target=target)
            )
            if author == ME:
                ts += 1
                store.apply(
                    [
                        engine.StoreOutgoing(
                            uuid.uuid4(), target_conv, encode_content(change), change, ts
                        )
                    ]
                )
            else:
                arrive(target_conv, author, change, uuid.uuid4())
        elif action < 0.75 and texts:  # a reaction: no row of its own
            target_conv, target, _ = rng.choice(texts)
            arrive(
                target_conv, rng.choice(PEERS), Reaction(target=target, emoji="👍"), uuid.uuid4()
            )
        elif action < 0.8 and texts:  # removed from this device only
            target_conv, target, _ = texts.pop(rng.randrange(len(texts)))
            with store.transaction():
                edits.delete_for_me(store.db, target)
            for pending in sent.values():
                if target in pending:
                    pending.remove(target)
        elif action < 0.9:  # read up to somewhere
            store.apply([engine.StoreReadMark(conv, rng.randint(0, seqs[conv]))])
        assert _shown(store) == _expected(store), f"step {step}"
    assert any(unread for _, unread in _shown(store).values())


def test_the_chat_list_reads_indexes_not_the_history(tmp_path: Path) -> None:
    store = _store(tmp_path)
    plan = " ".join(
        str(row[3]) for row in store.db.execute("EXPLAIN QUERY PLAN " + chatlist.CONVERSATIONS)
    )
    assert "messages_unread" in plan and "messages_conv_ord" in plan
    assert "SCAN m" not in plan
