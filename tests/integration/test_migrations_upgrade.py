"""Upgrades from every released schema version, with data in the database.

Server store: a database is built at each historical version N of the main schema (the first N
scripts of ``SCRIPTS``, run by :mod:`tidings.migrations`) and filled through SQL valid at that
version: accounts, devices, a direct conversation and a group with members and watermarks,
envelopes (system, plain, with mentions), pending rows (with per-device ciphertexts from v3),
and from v3 on key material, a to-device message and a device link in progress. The current
store then opens it (migrating the main schema and creating the components) and everything is
checked through the Store API: the account authenticates with its old token, history is
fetchable, the pending queue is replayed and acked, one-time keys are claimable once, sends are
still idempotent and sequenced, and the device link completes.

Client profile: a profile at each version of its main schema (and of the key store component,
including the table it kept its version in before the shared runner) opens with the current
:class:`LocalStore` and shows its conversations, history and search results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings import migrations
from tidings.client import keystore
from tidings.client.store import MIGRATIONS as CLIENT_MIGRATIONS
from tidings.client.store import LocalStore
from tidings.protocol import Envelope, encode
from tidings.protocol.keys import KeyUpload, KyberPreKey, OneTimePreKey, SignedPreKey
from tidings.server.auth import Authenticator
from tidings.server.push.store import StoredRegistration
from tidings.server.store import NewDeviceLink, NewMessage
from tidings.server.store.sqlite import SqliteStore
from tidings.server.store.sqlite import migrations as server_schema

pytestmark = pytest.mark.sqlite_only(
    "upgrades of SQLite databases (the server store's, the client profile's); no server runs"
)

T0 = 1_700_000_000_000
#: far enough ahead that nothing the store keeps has expired
NOW = T0 + 60_000
SERVER_VERSIONS = list(range(1, len(server_schema.SCRIPTS) + 1))
MSG_IDS = {seq: uuid.UUID(int=seq) for seq in range(1, 4)}
GROUP_MSG = uuid.UUID(int=102)


def sha(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def insert(db: sqlite3.Connection, table: str, **values: object) -> None:
    """Insert the values whose column exists at this version (later columns get defaults)."""
    present = {k: v for k, v in values.items() if k in columns(db, table)}
    names = ", ".join(present)
    marks = ", ".join("?" for _ in present)
    db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(present.values()))


# --------------------------------------------------------------------------- the server store


def fill_server(db: sqlite3.Connection, version: int) -> dict[str, int]:
    """Representative rows in SQL valid at ``version``; returns each sender's expected
    stored bytes (the v6 migration computes them from the envelopes and pending rows)."""
    e2ee = version >= 3
    db.execute("BEGIN")
    insert(
        db, "accounts", id="a1", username="alice", created_at=T0, identity_key=b"\x05" + b"A" * 32
    )
    insert(db, "accounts", id="b1", username="bob", created_at=T0, identity_key=b"\x05" + b"B" * 32)
    for account, name, key in (("a1", "phone", "ka"), ("b1", "laptop", "kb")):
        insert(
            db,
            "devices",
            account_id=account,
            device_id=1,
            name=name,
            token_key=key,
            token_hash=sha(f"secret-{key}"),
            created_at=T0,
            welcomed_at=T0,
            last_dseq=1 if account == "b1" and e2ee else 0,
        )
    # a direct conversation (3 envelopes) and a group (2)
    insert(
        db, "conversations", id="c1", kind="direct", title="", direct_key="a1|b1", last_seq=3,
        created_at=T0,
    )  # fmt: skip
    insert(
        db, "conversations", id="g1", kind="group", title="Lunch club", direct_key=None,
        last_seq=2, created_at=T0,
    )  # fmt: skip
    for conv, account, role, delivered, read, last_sent in (
        ("c1", "a1", "member", 3, 3, 3),
        ("c1", "b1", "member", 1, 1, 0),
        ("g1", "a1", "admin", 1, 1, 0),
        ("g1", "b1", "member", 2, 2, 2),
    ):
        insert(
            db, "members", conv_id=conv, account_id=account, role=role, joined_seq=1,
            delivered=delivered, read=read, last_sent=last_sent, marks_at=T0,
        )  # fmt: skip
    envelopes = [
        ("c1", 1, MSG_IDS[1], "a1", "system", b"created", None),
        ("c1", 2, MSG_IDS[2], "a1", "msg", b"ciphertext two", None),
        ("c1", 3, MSG_IDS[3], "a1", "msg", b"ciphertext three", json.dumps(["b1"])),
        ("g1", 1, uuid.UUID(int=101), "a1", "system", b"created", None),
        ("g1", 2, GROUP_MSG, "b1", "msg", b"group ciphertext", None),
    ]
    # bob's phone has not received c1's messages; alice has not received the group's
    pending = [("b1", "c1", 2, b"own two"), ("b1", "c1", 3, b"own three"), ("a1", "g1", 2, b"g")]
    for account, conv, seq, own in pending:
        insert(
            db, "pending", account_id=account, device_id=1, conv_id=conv, seq=seq,
            queued_at=T0 + seq, payload=own if e2ee else None,
        )  # fmt: skip
    stored = {"a1": 0, "b1": 0}
    for conv, seq, msg_id, sender, kind, payload, mentions in envelopes:
        size = 0
        if kind == "msg":
            own = sum(len(p) for _, c, s, p in pending if (c, s) == (conv, seq)) if e2ee else 0
            size = len(payload) + len(mentions or "") + own
            stored[sender] += size
        insert(
            db, "envelopes", conv_id=conv, seq=seq, id=msg_id.bytes, sender=sender,
            sender_device=1, ts=T0 + seq, kind=kind, payload=payload, mentions=mentions,
            size=size,
        )  # fmt: skip
    if "stored_bytes" in columns(db, "accounts"):  # from v6 the store counts as it stores
        for account, total in stored.items():
            db.execute("UPDATE accounts SET stored_bytes = ? WHERE id = ?", (total, account))
    if e2ee:
        for account in ("a1", "b1"):
            insert(
                db, "device_keys", account_id=account, device_id=1, registration_id=42,
                signed_prekey_id=1, signed_prekey=b"\x05" + b"s" * 32,
                signed_prekey_sig=b"g" * 64, signed_prekey_at=T0, kyber_id=2,
                kyber_key=b"\x08" + b"k" * 1568, kyber_sig=b"h" * 64,
            )  # fmt: skip
        insert(db, "one_time_keys", account_id="b1", device_id=1, kind=0, key_id=7,
               key=b"\x05" + b"o" * 32, signature=None)  # fmt: skip
        insert(db, "one_time_keys", account_id="b1", device_id=1, kind=1, key_id=8,
               key=b"\x08" + b"q" * 1568, signature=b"j" * 64)  # fmt: skip
        insert(
            db, "device_queue", account_id="b1", device_id=1, dseq=1, id=uuid.UUID(int=9).bytes,
            sender="a1", sender_device=1, ts=T0, payload=b"sender key distribution",
        )  # fmt: skip
        insert(
            db, "device_sends", sender="a1", sender_device=1, id=uuid.UUID(int=9).bytes, ts=T0,
            unknown=None,
        )  # fmt: skip
        # a tablet waiting to be linked (from v5 with the token it chose itself)
        insert(
            db, "provisioning", id="p1", secret_hash=sha("link secret"),
            ephemeral_key=b"\x05" + b"e" * 32, created_at=T0, expires_at=T0 + 10**9,
            token_key="kt", token_hash=sha("secret-kt"),
        )  # fmt: skip
    db.execute("COMMIT")
    return stored


def build_server_database(path: Path, version: int) -> dict[str, int]:
    with connect(path) as db:
        migrations.migrate(db, server_schema.steps()[:version])
        assert migrations.version(db) == version
        return fill_server(db, version)


@pytest.mark.parametrize("version", SERVER_VERSIONS)
async def test_a_server_database_at_every_version_upgrades_with_its_data(tmp_path, version):
    path = tmp_path / "tidings.sqlite3"
    expected_bytes = build_server_database(path, version)
    store = SqliteStore(path)
    await store.open()
    try:
        await check_server_store(store, version, expected_bytes)
    finally:
        await store.close()
    with connect(path) as db:
        assert migrations.version(db) == len(server_schema.SCRIPTS)
        for component, scripts in server_schema.COMPONENTS.items():
            assert migrations.version(db, component) == len(scripts)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


async def check_server_store(store: SqliteStore, version: int, stored: dict[str, int]) -> None:
    # the accounts and their old tokens
    auth = Authenticator(store)
    alice = await auth.device("Bearer ka.secret-ka")
    assert alice is not None and (alice.account_id, alice.username, alice.device_id) == (
        "a1",
        "alice",
        1,
    )
    assert await auth.device("Bearer ka.wrong") is None
    names = await store.accounts_by_username(["alice", "bob"])
    assert {n: a.account_id for n, a in names.items()} == {"alice": "a1", "bob": "b1"}
    assert await store.group_adds("b1") == "everyone"
    # conversations, members and history
    assert await store.heads("a1") == {"c1": 3, "g1": 2}
    group = await store.conversation("g1")
    assert group is not None and group.title == "Lunch club" and group.kind == "group"
    assert [(m.account_id, m.role) for m in group.members] == [("a1", "admin"), ("b1", "member")]
    history = await store.envelopes("c1", 0, 100, device=("b1", 1))
    assert [(e.seq, e.kind, e.id, e.payload) for e in history] == [
        (1, "system", MSG_IDS[1], b"created"),
        (2, "msg", MSG_IDS[2], b"ciphertext two"),
        (3, "msg", MSG_IDS[3], b"ciphertext three"),
    ]
    assert history[2].mentions == ["b1"]
    if version >= 3:
        assert history[1].device_payload == b"own two"
    assert await store.stored_bytes("a1") == stored["a1"] > 0
    assert await store.stored_bytes("b1") == stored["b1"] > 0
    # the pending queue is replayed, then acked
    replay = await store.pending("b1", 1, ("", 0), 100)
    assert [(e.conv, e.seq) for e in replay] == [("c1", 2), ("c1", 3)]
    moves = await store.ack("b1", 1, {"c1": 3}, NOW)
    assert moves and await store.pending("b1", 1, ("", 0), 100) == []
    assert [(e.conv, e.seq) for e in await store.pending("a1", 1, ("", 0), 100)] == [("g1", 2)]
    marks = {w.account: (w.delivered, w.read) for w in await store.watermarks("c1")}
    assert marks == {"a1": (3, 3), "b1": (3, 1)}
    assert await store.welcome_watermarks("a1", 1, NOW) is not None
    # a resend of an old message is recognised; a new one takes the next seq
    again = await store.append(NewMessage(MSG_IDS[2], "c1", "a1", 1, b"ciphertext two", (), NOW))
    assert again.duplicate and again.envelope.seq == 2
    new = await store.append(NewMessage(uuid.uuid4(), "c1", "b1", 1, b"reply", ("a1",), NOW))
    assert not new.duplicate and new.envelope.seq == 4 and new.recipients
    # keys: the stored one-time keys are handed out once, then the last resort
    if version >= 3:
        assert await store.device_map("c1") == {"a1": [1], "b1": [1]}
        first = await store.claim_keys(("a1", 1), {"b1": []})
        (device,) = first[0].devices
        assert device.prekey is not None and device.prekey.id == 7
        assert device.kyber_prekey.id == 8 and not device.kyber_is_last_resort
        (device,) = (await store.claim_keys(("a1", 1), {"b1": []}))[0].devices
        assert device.prekey is None and device.kyber_is_last_resort
        queued = await store.device_queue("b1", 1, 0, 10)
        assert [(q.dseq, q.payload) for q in queued] == [(1, b"sender key distribution")]
        assert await store.ack_device_queue("b1", 1, 1) == 1
    else:
        assert await store.claim_keys(("a1", 1), {"b1": []}) == []
    # keys uploaded after the upgrade are claimable too
    await store.upload_keys("a1", 1, key_upload(b"A", prekey_id=70), NOW)
    (bundle,) = await store.claim_keys(("b1", 1), {"a1": []})
    (device,) = bundle.devices
    assert device.prekey is not None and device.prekey.id == 70
    # the device link begun before the upgrade completes
    if version >= 3:
        await check_link(store, version)


def key_upload(fill: bytes, prekey_id: int) -> KeyUpload:
    return KeyUpload(
        identity_key=b"\x05" + fill * 32,
        registration_id=42,
        signed_prekey=SignedPreKey(id=3, key=b"\x05" + b"n" * 32, signature=b"s" * 64),
        kyber_last_resort=KyberPreKey(id=4, key=b"\x08" + b"m" * 1568, signature=b"t" * 64),
        prekeys=[OneTimePreKey(id=prekey_id, key=b"\x05" + b"p" * 32)],
    )


async def check_link(store: SqliteStore, version: int) -> None:
    link = NewDeviceLink(
        provisioning_id="p1",
        account_id="a1",
        device_name="tablet",
        ephemeral_key=b"\x05" + b"e" * 32,
        sealed=b"sealed provisioning message",
        placeholder_key="placeholder",
        placeholder_hash=sha("nobody knows"),
        max_devices=16,
        now=NOW,
    )
    device_id = await store.approve_provisioning(link)
    assert device_id == 2
    linked = await store.fetch_provisioning("p1", sha("link secret"), "kf", sha("secret-kf"), NOW)
    assert (linked.account_id, linked.username, linked.device_id) == ("a1", "alice", 2)
    # from v5 the new device chose its token before asking; before, the fetch made it
    token = "Bearer kt.secret-kt" if version >= 5 else "Bearer kf.secret-kf"
    tablet = await Authenticator(store).device(token)
    assert tablet is not None and (tablet.account_id, tablet.device_id) == ("a1", 2)


async def test_a_database_with_a_component_already_at_its_version_keeps_its_rows(tmp_path):
    """A newest main schema with some components present and others new: each component is
    migrated on its own and keeps its rows."""
    path = tmp_path / "tidings.sqlite3"
    newest = len(server_schema.SCRIPTS)
    build_server_database(path, newest)
    push = server_schema.component_steps()["push"]
    with connect(path) as db:
        migrations.migrate(db, push, component="push")
        db.execute(
            "INSERT INTO push_registrations (account_id, device_id, platform, token, updated_at)"
            " VALUES ('b1', 1, 'fcm', 'fcm-token', ?)",
            (T0,),
        )
    store = SqliteStore(path)
    await store.open()
    try:
        registration = await store.push_registration("b1", 1)
        assert registration == StoredRegistration("b1", 1, "fcm", "fcm-token", updated_at=T0)
    finally:
        await store.close()
    with connect(path) as db:
        assert db.execute("SELECT count(*) FROM invites").fetchone()[0] == 0


# --------------------------------------------------------------------------- the client profile

#: (main schema version, key store version); 0: the key store had never run. Before the key
#: store (main v3) a profile had no key tables; from v3 the key store kept its version in
#: e2ee_schema (legacy) or, since the shared runner, in schema_versions.
CLIENT_VERSIONS = [
    (1, 0),
    (2, 0),
    (3, 1),
    (3, 2),
    (4, 1),
    (4, 2),
    (4, 3),
    (5, 3),
    (6, 3),
]
CLIENT_NEWEST = (len(CLIENT_MIGRATIONS), len(keystore.STEPS))
PEER = "b1"


def build_profile(path: Path, main: int, keys: int, *, legacy: bool) -> None:
    with connect(path) as db:
        migrations.migrate(db, CLIENT_MIGRATIONS[:main])
        if keys:
            migrations.migrate(db, keystore.STEPS[:keys], component=keystore.COMPONENT)
            if legacy:  # before the shared runner: the version in a table of its own
                db.execute("CREATE TABLE e2ee_schema (version INTEGER NOT NULL)")
                db.execute("INSERT INTO e2ee_schema VALUES (?)", (keys,))
                db.execute("DELETE FROM schema_versions WHERE component = ?", (keystore.COMPONENT,))
        fill_profile(db, main, keys)


def fill_profile(db: sqlite3.Connection, main: int, keys: int) -> None:
    # before v4 the client's own placeholder lines were 'system' lines
    placeholder = "undecryptable" if main >= 4 else "system"
    db.execute("BEGIN")
    db.execute(
        "INSERT INTO account (id, account_id, username, device_id, server_url)"
        " VALUES (1, 'a1', 'alice', 1, 'https://chat.example.org')"
    )
    db.execute("INSERT INTO users VALUES ('a1', 'alice'), (?, 'bob')", (PEER,))
    db.execute(
        "INSERT INTO conversations (id, kind, title, created_at, last_activity, read_upto,"
        " is_member, known) VALUES ('c1', 'direct', '', ?, ?, 2, 1, 1)",
        (T0, T0 + 3),
    )
    db.execute("INSERT INTO members VALUES ('c1', 'a1', 'member'), ('c1', ?, 'member')", (PEER,))
    rows = [
        # id, seq, ord, sender, is_own, kind, body, status
        (MSG_IDS[1], 1, 1, "a1", 1, "text", "lunch at noon?", "read"),
        (MSG_IDS[2], 2, 2, PEER, 0, "text", "sure, the usual place", "received"),
        (MSG_IDS[3], 3, 3, PEER, 0, placeholder, "This message could not be decrypted", "received"),
        (uuid.UUID(int=4), None, (1 << 50) + 1, "a1", 1, "text", "on my way", "sending"),
    ]
    for msg_id, seq, ord_, sender, own, kind, body, status in rows:
        db.execute(
            "INSERT INTO messages (id, conv_id, seq, ord, sender_id, sender_device, is_own,"
            " kind, body, status, created_at) VALUES (?, 'c1', ?, ?, ?, 1, ?, ?, ?, ?, ?)",
            (msg_id.hex, seq, ord_, sender, own, kind, body, status, T0 + (seq or 4)),
        )
    db.execute(
        "INSERT INTO outbox VALUES (?, 'c1', ?, ?)", (uuid.UUID(int=4).hex, b"queued", T0 + 4)
    )
    db.execute("INSERT INTO cursors VALUES ('c1', 3)")
    db.execute("INSERT INTO watermarks VALUES ('c1', ?, 1, 1)", (PEER,))
    if keys:
        db.execute("INSERT INTO e2ee_local VALUES (1, ?, 1234)", (b"serialized identity",))
        db.execute(
            "INSERT INTO e2ee_identities (account_id, identity_key, verified, first_seen)"
            " VALUES (?, ?, 1, ?)",
            (PEER, b"\x05" + b"B" * 32, T0),
        )
        db.execute("INSERT INTO e2ee_sessions VALUES (?, 1, ?)", (PEER, b"session record"))
        waiting = Envelope(
            conv="g1", seq=5, id=uuid.UUID(int=50), sender=PEER, sender_device=1, ts=T0,
            payload=b"sealed for a sender key",
        )  # fmt: skip
        if keys == 1:  # the key store's v1 table, keyed by message id alone
            db.execute(
                "INSERT INTO e2ee_pending VALUES (?, ?, 1, ?, ?)",
                (waiting.id.hex, PEER, encode(waiting), T0),
            )
        else:
            db.execute(
                "INSERT INTO e2ee_pending VALUES ('g1', ?, 1, ?, ?, ?)",
                (PEER, waiting.id.hex, encode(waiting), T0),
            )
    db.execute("COMMIT")


#: each version, and with a key store each way its version was kept
CLIENT_CASES = [
    pytest.param(main, keys, legacy, id=f"v{main}-keys{keys}{'-e2ee_schema' if legacy else ''}")
    for main, keys in CLIENT_VERSIONS
    for legacy in (False, True)
    if keys or not legacy
]


@pytest.mark.parametrize(("main", "keys", "legacy"), CLIENT_CASES)
def test_a_profile_at_every_version_opens_and_shows_its_messages(tmp_path, main, keys, legacy):
    path = tmp_path / "profile.sqlite3"
    build_profile(path, main, keys, legacy=legacy)
    store = LocalStore(path)
    try:
        assert store.account_id == "a1"
        account = store.account()
        assert account is not None and account.server_url == "https://chat.example.org"
        (conv,) = store.conversations()
        assert conv.id == "c1" and conv.title == "bob"
        # the chat list: the unsent message last, nothing unread (a placeholder is no text)
        assert conv.last_message is not None and conv.last_message.id == uuid.UUID(int=4)
        assert conv.unread == 0
        page = store.history("c1", None, 50)
        shown = [(m.id, m.body) for m in page.messages]
        assert shown == [
            (MSG_IDS[1], "lunch at noon?"),
            (MSG_IDS[2], "sure, the usual place"),
            (MSG_IDS[3], "This message could not be decrypted"),
            (uuid.UUID(int=4), "on my way"),
        ]
        own = [str(m.status) for m in page.messages if m.is_own]
        assert own == ["read", "sending"]
        # the v4 migration gave the client's own placeholder line its kind
        assert str(page.messages[2].kind) == "undecryptable"
        assert [hit.message.id for hit in store.search("usual", 10)] == [MSG_IDS[2]]
        assert store.restored().outbox  # the unsent message is still queued
        if keys:
            known = store.keys.known_identity(PEER)
            assert known is not None and known.verified and known.checked_at is None
            pending = store.db.execute(
                "SELECT conv_id, sender, message_id FROM e2ee_pending"
            ).fetchall()
            assert pending == [("g1", PEER, uuid.UUID(int=50).hex)]
            assert store.db.execute("SELECT record FROM e2ee_sessions").fetchone()[0] == (
                b"session record"
            )
    finally:
        store.close()
    with connect(path) as db:
        assert (migrations.version(db), migrations.version(db, keystore.COMPONENT)) == (
            CLIENT_NEWEST
        )
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "e2ee_schema" not in tables and "e2ee_pending_v1" not in tables
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_versions_under_test_are_every_released_one() -> None:
    """A new schema version must be added here: the newest of each is covered."""
    assert SERVER_VERSIONS[-1] == len(server_schema.SCRIPTS)
    assert max(m for m, _ in CLIENT_VERSIONS) == CLIENT_NEWEST[0]
    assert max(k for _, k in CLIENT_VERSIONS) == CLIENT_NEWEST[1]
