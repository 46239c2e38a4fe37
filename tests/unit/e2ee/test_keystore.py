"""The SQLite key store: round trips, transactions, key generation and maintenance, identity
bookkeeping; and the sealed provisioning message."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import msgspec
import pytest

from tidings import migrations
from tidings.client import keystore
from tidings.client.keystore import (
    PREKEY_BATCH,
    SIGNED_PREKEY_KEEP_MS,
    SIGNED_PREKEY_ROTATE_MS,
    KeyStore,
)
from tidings.client.provisioning import (
    LinkCodeError,
    ProvisionMessage,
    link_code,
    open_sealed,
    parse_link_code,
    seal,
)
from tidings.crypto import (
    Direction,
    IdentityKeyPair,
    InMemoryIdentityKeyStore,
    InMemorySessionStore,
    InvalidKyberPreKeyIdError,
    InvalidPreKeyIdError,
    InvalidSignedPreKeyIdError,
    KyberPreKeyRecord,
    KyberPublicKey,
    PreKeyBundle,
    PreKeyRecord,
    PreKeySignalMessage,
    PrivateKey,
    ProtocolAddress,
    SenderKeyRecord,
    SessionRecord,
    create_sender_key_distribution_message,
    message_decrypt_prekey,
    message_encrypt,
    process_prekey_bundle,
)
from tidings.protocol import Envelope
from tidings.protocol import keys as wire
from tidings.protocol.keys import KeyCounts

DAY = 24 * 3600 * 1000


def _store(path: Path) -> KeyStore:
    db = sqlite3.connect(path, isolation_level=None)
    keys = KeyStore(db)
    if not keys.has_identity():
        keys.set_identity(IdentityKeyPair.generate())
    return keys


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "tidings.db"
    keys = _store(path)
    identity = keys.get_identity_key_pair()
    reg = keys.get_local_registration_id()
    upload = keys.initial_upload(now=1_000)
    assert len(upload.prekeys) == PREKEY_BATCH and len(upload.kyber_prekeys) == PREKEY_BATCH
    assert upload.signed_prekey is not None and upload.kyber_last_resort is not None
    assert upload.identity_key == identity.identity_key.serialize()
    assert identity.identity_key.verify_signature(
        upload.signed_prekey.key, upload.signed_prekey.signature
    )
    bob = ProtocolAddress("bob", 2)
    keys.store_session(bob, SessionRecord.new_fresh())
    distribution = uuid.uuid4()
    create_sender_key_distribution_message(bob, distribution, keys)
    keys.observe_identity("bob", IdentityKeyPair.generate().identity_key)
    keys.db.close()

    again = _store(path)
    assert again.get_identity_key_pair().serialize() == identity.serialize()
    assert again.get_local_registration_id() == reg
    assert again.get_pre_key(upload.prekeys[0].id).public_key().serialize() == (
        upload.prekeys[0].key
    )
    assert again.get_signed_pre_key(upload.signed_prekey.id).signature == (
        upload.signed_prekey.signature
    )
    assert again.get_kyber_pre_key(upload.kyber_last_resort.id).id == upload.kyber_last_resort.id
    assert again.load_session(bob) is not None
    record = again.load_sender_key(bob, distribution)
    assert isinstance(record, SenderKeyRecord) and not record.is_empty()
    assert again.known_identity("bob") is not None


def test_missing_keys_raise_the_library_errors(tmp_path: Path) -> None:
    keys = _store(tmp_path / "db")
    with pytest.raises(InvalidPreKeyIdError):
        keys.get_pre_key(5)
    with pytest.raises(InvalidSignedPreKeyIdError):
        keys.get_signed_pre_key(5)
    with pytest.raises(InvalidKyberPreKeyIdError):
        keys.get_kyber_pre_key(5)
    assert keys.load_session(ProtocolAddress("x", 1)) is None
    assert keys.load_sender_key(ProtocolAddress("x", 1), uuid.uuid4()) is None


def test_one_time_keys_go_away_and_the_last_resort_stays(tmp_path: Path) -> None:
    keys = _store(tmp_path / "db")
    upload = keys.initial_upload()
    assert upload.kyber_last_resort is not None
    keys.remove_pre_key(upload.prekeys[0].id)
    with pytest.raises(InvalidPreKeyIdError):
        keys.get_pre_key(upload.prekeys[0].id)
    keys.mark_kyber_pre_key_used(upload.kyber_prekeys[0].id)
    with pytest.raises(InvalidKyberPreKeyIdError):
        keys.get_kyber_pre_key(upload.kyber_prekeys[0].id)
    keys.mark_kyber_pre_key_used(upload.kyber_last_resort.id)
    assert keys.get_kyber_pre_key(upload.kyber_last_resort.id).id == upload.kyber_last_resort.id
    assert keys.pre_key_count() == PREKEY_BATCH - 1
    assert keys.kyber_pre_key_count() == PREKEY_BATCH - 1
    assert keys.kyber_pre_key_count(last_resort=True) == 1


def test_writes_join_an_open_transaction_and_roll_back_with_it(tmp_path: Path) -> None:
    keys = _store(tmp_path / "db")
    address = ProtocolAddress("bob", 1)
    keys.db.execute("BEGIN")
    keys.store_session(address, SessionRecord.new_fresh())
    keys.save_pre_key(7, PreKeyRecord.generate(7))
    keys.db.execute("ROLLBACK")
    assert keys.load_session(address) is None
    with pytest.raises(InvalidPreKeyIdError):
        keys.get_pre_key(7)
    with pytest.raises(RuntimeError), keys.transaction():
        keys.save_pre_key(8, PreKeyRecord.generate(8))
        raise RuntimeError
    with pytest.raises(InvalidPreKeyIdError):
        keys.get_pre_key(8)


def test_refill_below_twenty_and_signed_prekey_rotation(tmp_path: Path) -> None:
    keys = _store(tmp_path / "db")
    start = 10 * DAY
    first = keys.initial_upload(now=start)
    assert first.signed_prekey is not None
    signed_id = first.signed_prekey.id
    healthy = KeyCounts(prekeys=50, kyber_prekeys=50, signed_prekey_id=signed_id)
    assert keys.maintenance_upload(healthy, now=start + DAY) is None

    low = KeyCounts(prekeys=19, kyber_prekeys=80, signed_prekey_id=signed_id)
    refill = keys.maintenance_upload(low, now=start + DAY)
    assert refill is not None and refill.signed_prekey is None
    assert len(refill.prekeys) == PREKEY_BATCH and len(refill.kyber_prekeys) == PREKEY_BATCH
    assert not {p.id for p in refill.prekeys} & {p.id for p in first.prekeys}

    rotated = keys.maintenance_upload(healthy, now=start + SIGNED_PREKEY_ROTATE_MS)
    assert rotated is not None and rotated.signed_prekey is not None
    assert rotated.signed_prekey.id != signed_id and not rotated.prekeys
    # the previous one still opens late PreKey messages, for 30 days
    keys.get_signed_pre_key(signed_id)
    new_counts = KeyCounts(prekeys=50, kyber_prekeys=50, signed_prekey_id=rotated.signed_prekey.id)
    keys.maintenance_upload(new_counts, now=start + SIGNED_PREKEY_ROTATE_MS + DAY)
    keys.get_signed_pre_key(signed_id)
    keys.maintenance_upload(
        new_counts, now=start + SIGNED_PREKEY_ROTATE_MS + SIGNED_PREKEY_KEEP_MS + 1
    )
    with pytest.raises(InvalidSignedPreKeyIdError):
        keys.get_signed_pre_key(signed_id)
    keys.get_signed_pre_key(rotated.signed_prekey.id)


def test_identity_changes_verified_and_blocked(tmp_path: Path) -> None:
    keys = _store(tmp_path / "db")
    bob = ProtocolAddress("bob", 1)
    old = IdentityKeyPair.generate().identity_key
    new = IdentityKeyPair.generate().identity_key
    assert keys.save_identity(bob, old) is False
    assert keys.save_identity(ProtocolAddress("bob", 2), old) is False  # per account
    assert keys.is_trusted_identity(bob, old, Direction.SENDING)
    assert not keys.is_trusted_identity(bob, new, Direction.SENDING)
    assert keys.is_trusted_identity(bob, new, Direction.RECEIVING)

    assert keys.save_identity(bob, new) is True
    [change] = keys.take_changes()
    assert change.account_id == "bob" and not change.was_verified
    assert keys.is_trusted_identity(bob, new, Direction.SENDING)

    keys.set_verified("bob", True)
    newer = IdentityKeyPair.generate().identity_key
    assert keys.observe_identity("bob", newer)
    known = keys.known_identity("bob")
    assert known is not None and known.blocked and not known.verified
    assert not keys.is_trusted_identity(bob, newer, Direction.SENDING)
    keys.set_verified("bob", True)
    assert keys.is_trusted_identity(bob, newer, Direction.SENDING)
    assert [c.was_verified for c in keys.identity_changes("bob")] == [False, True]
    assert keys.get_identity(bob) == newer


def test_sessions_archive_and_device_lists(tmp_path: Path) -> None:
    keys = _store(tmp_path / "db")
    assert keys.devices("bob") is None
    assert keys.set_devices("bob", [1, 2]) == []
    assert keys.set_devices("bob", [2, 3]) == [1]
    assert keys.devices("bob") == [2, 3]
    assert keys.set_devices("carol", []) == []
    assert keys.devices("carol") == []
    conv = "g"
    first = keys.new_group_key(conv)
    keys.mark_shared(conv, first, [("bob", 2)])
    assert keys.shared_with(conv, first) == {("bob", 2)}
    keys.forget_shared_device("bob", 2)
    assert keys.shared_with(conv, first) == set()
    keys.drop_group_key(conv)
    assert keys.group_key(conv) is None


def test_provisioning_seal_opens_only_for_the_new_device() -> None:
    ephemeral = PrivateKey.generate()
    public = ephemeral.public_key().serialize()
    code = link_code("p_abc123", public)
    assert parse_link_code(code) == ("p_abc123", public)
    identity = IdentityKeyPair.generate()
    message = ProvisionMessage(account_id="a1", username="alice", identity=identity.serialize())
    sealed = seal(message, public)
    assert identity.serialize() not in sealed
    assert open_sealed(sealed, ephemeral) == message
    with pytest.raises(LinkCodeError):
        open_sealed(sealed, PrivateKey.generate())
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(LinkCodeError):
        open_sealed(bytes(tampered), ephemeral)
    for bad in ("nodot", ".AAAA", "id.AAAA"):
        with pytest.raises(LinkCodeError):
            parse_link_code(bad)


def _old_profile_at(db: sqlite3.Connection, version: int) -> None:
    """The key store as the code before the one migration runner left it at ``version``:
    its tables, and the version in a table of its own (``e2ee_schema``)."""
    for script in keystore.SCHEMA[:version]:
        for statement in migrations.statements(script):
            db.execute(statement)
    if version >= 2:
        db.execute("DROP TABLE e2ee_pending_v1")  # what the old step 2 moved and dropped
    db.execute("CREATE TABLE IF NOT EXISTS e2ee_schema (version INTEGER NOT NULL)")
    db.execute("INSERT INTO e2ee_schema VALUES (?)", (version,))


def test_an_old_profile_carries_its_key_store_version_over_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    _old_profile_at(db, 2)
    db.execute(
        "INSERT INTO e2ee_pending VALUES ('g1', 'alice', 2, 'id', x'00', 1)"
    )  # a row only the current schema (step 2) can hold
    db.close()
    for _ in range(2):  # carried over on the first open; the second finds nothing to do
        db = sqlite3.connect(path, isolation_level=None)
        KeyStore(db)
        assert migrations.version(db, keystore.COMPONENT) == len(keystore.STEPS)
        legacy = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'e2ee_schema'")
        assert legacy.fetchone() is None
        assert db.execute("SELECT count(*) FROM e2ee_pending").fetchone() == (1,)
        db.close()


def test_a_new_key_store_records_its_version_in_schema_versions() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    KeyStore(db)
    assert migrations.version(db, keystore.COMPONENT) == len(keystore.STEPS)


def test_pending_envelopes_move_to_the_conversation_keyed_table() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    _old_profile_at(db, 1)
    env = Envelope(
        conv="g1", seq=3, id=uuid.uuid4(), sender="alice", sender_device=2, ts=1, payload=b"\x07x"
    )
    raw = msgspec.msgpack.encode(env)
    db.execute("INSERT INTO e2ee_pending VALUES (?, ?, ?, ?, ?)", (env.id.hex, "alice", 2, raw, 5))
    db.execute("INSERT INTO e2ee_pending VALUES (?, ?, ?, ?, ?)", ("ff" * 16, "eve", 1, b"?", 6))
    keys = KeyStore(db)
    assert migrations.version(db, keystore.COMPONENT) == len(keystore.STEPS)
    assert keys.pending_from("alice", 2) == [(env.id, raw)]
    assert keys.pending_from("eve", 1) == []  # unreadable: dropped
    keys.keep_pending("g2", env.id, "alice", 2, raw)  # same id elsewhere: kept as well
    assert len(keys.pending_from("alice", 2)) == 2
    keys.drop_pending("g1", "alice", env.id)
    assert keys.pending_from("alice", 2) == [(env.id, raw)]


def test_an_identity_change_rolled_back_is_not_reported() -> None:
    keys = KeyStore(sqlite3.connect(":memory:", isolation_level=None))
    keys.observe_identity("bob", IdentityKeyPair.generate().identity_key)
    first = keys.known_identity("bob")
    with pytest.raises(RuntimeError), keys.transaction():
        assert keys.observe_identity("bob", IdentityKeyPair.generate().identity_key)
        raise RuntimeError("later step failed")
    assert keys.take_changes() == []
    assert keys.identity_changes("bob") == []
    assert keys.known_identity("bob") == first


def test_a_session_cached_in_memory_never_outlives_what_the_database_holds(
    tmp_path: Path,
) -> None:
    keys = _store(tmp_path / "db")
    address = ProtocolAddress("bob", 1)
    record = SessionRecord.new_fresh()
    keys.store_session(address, record)
    assert keys.load_session(address) is record  # read from memory, not deserialized
    # changed in place by code that then failed inside a transaction: the change is dropped
    with pytest.raises(RuntimeError), keys.transaction():
        loaded = keys.load_session(address)
        assert loaded is not None
        loaded.archive_current_state()
        raise RuntimeError
    again = keys.load_session(address)
    assert again is not record and again is not None
    assert again.serialize() == SessionRecord.new_fresh().serialize()
    # a savepoint inside someone else's transaction: only its own writes go
    keys.db.execute("BEGIN")
    keys.store_session(ProtocolAddress("carol", 1), SessionRecord.new_fresh())
    with pytest.raises(RuntimeError), keys.transaction():
        keys.store_session(ProtocolAddress("dave", 1), SessionRecord.new_fresh())
        raise RuntimeError
    keys.db.execute("COMMIT")
    assert keys.load_session(ProtocolAddress("carol", 1)) is not None
    assert keys.load_session(ProtocolAddress("dave", 1)) is None
    # a statement behind the key store's back (a reinstall in a test) is seen
    keys.db.execute("DELETE FROM e2ee_sessions")
    assert keys.load_session(ProtocolAddress("carol", 1)) is None
    keys.store_session(ProtocolAddress("carol", 1), SessionRecord.new_fresh())
    # a second connection sees what the first wrote: the cache is written through
    other = keystore.KeyStore(sqlite3.connect(tmp_path / "db", isolation_level=None))
    assert other.load_session(ProtocolAddress("carol", 1)) is not None


def _first_message(keys: KeyStore, last_resort: wire.KyberPreKey, sender: str) -> bytes:
    """A new sender's first (PreKey) message to ``keys``' device, through its last-resort
    Kyber prekey and no one-time prekey, as when the one-time ones are gone."""
    current = keys.current_signed_pre_key()
    assert current is not None
    signed = keys.get_signed_pre_key(current[0])
    identities = InMemoryIdentityKeyStore(IdentityKeyPair.generate(), 7)
    sessions = InMemorySessionStore()
    me = ProtocolAddress("me", 1)
    bundle = PreKeyBundle(
        registration_id=keys.get_local_registration_id(),
        device_id=1,
        pre_key_id=None,
        pre_key_public=None,
        signed_pre_key_id=signed.id,
        signed_pre_key_public=signed.public_key(),
        signed_pre_key_signature=signed.signature,
        identity_key=keys.get_identity_key_pair().identity_key,
        kyber_pre_key_id=last_resort.id,
        kyber_pre_key_public=KyberPublicKey.deserialize(last_resort.key),
        kyber_pre_key_signature=last_resort.signature,
    )
    process_prekey_bundle(bundle, me, sessions, identities)
    return message_encrypt(sender.encode(), me, sessions, identities).serialize()


def _decrypt_first(keys: KeyStore, sender: str, data: bytes) -> bytes:
    return message_decrypt_prekey(
        PreKeySignalMessage.deserialize(data),
        ProtocolAddress(sender, 1),
        keys,
        keys,
        keys,
        keys,
        keys,
    )


def test_kyber_prekeys_stay_loaded_until_written_used_up_or_rolled_back(tmp_path: Path) -> None:
    keys = _store(tmp_path / "db")
    upload = keys.initial_upload()
    last = upload.kyber_last_resort
    assert last is not None
    loaded = keys.get_kyber_pre_key(last.id)
    assert keys.get_kyber_pre_key(last.id) is loaded  # the seed is expanded once
    # every new session through the last-resort key: it is used, stays and stays loaded
    for sender in ("carol", "dave", "erin"):
        assert _decrypt_first(keys, sender, _first_message(keys, last, sender)) == sender.encode()
        assert keys.get_kyber_pre_key(last.id) is loaded
    assert keys.kyber_pre_key_count(last_resort=True) == 1
    # a one-time key used up is gone, loaded or not
    one_time = upload.kyber_prekeys[0].id
    assert keys.get_kyber_pre_key(one_time).id == one_time
    keys.mark_kyber_pre_key_used(one_time)
    with pytest.raises(InvalidKyberPreKeyIdError):
        keys.get_kyber_pre_key(one_time)
    # a key written again under its id (a new last-resort key) is read again
    identity = keys.get_identity_key_pair()
    replacement = KyberPreKeyRecord.generate(last.id, identity, 5)
    keys.save_kyber_pre_key(last.id, replacement)
    again = keys.get_kyber_pre_key(last.id)
    assert again.public_key().serialize() == replacement.public_key().serialize()
    assert again.public_key().serialize() != loaded.public_key().serialize()
    # loaded inside a transaction that rolls back: it was never there
    with pytest.raises(RuntimeError), keys.transaction():
        keys.save_kyber_pre_key(4242, KyberPreKeyRecord.generate(4242, identity, 5))
        assert keys.get_kyber_pre_key(4242).id == 4242
        raise RuntimeError
    with pytest.raises(InvalidKyberPreKeyIdError):
        keys.get_kyber_pre_key(4242)
    keys.db.execute("BEGIN")
    keys.save_kyber_pre_key(4243, KyberPreKeyRecord.generate(4243, identity, 5))
    assert keys.get_kyber_pre_key(4243).id == 4243
    keys.db.execute("ROLLBACK")
    keys.forget_cached()  # what the client's store does when its transaction rolls back
    with pytest.raises(InvalidKyberPreKeyIdError):
        keys.get_kyber_pre_key(4243)
    # bounded
    for key in upload.kyber_prekeys[1:]:
        keys.get_kyber_pre_key(key.id)
    assert len(keys._kyber) <= keystore.KYBER_PREKEYS_KEPT
