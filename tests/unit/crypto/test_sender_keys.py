"""Unit tests of Sender Keys (tidings.crypto.sender_keys).

The known-answer vectors were produced by libsignal-client 0.90.0 through tests/interop/peer.mjs
(a sender key, four of its messages at iterations 0, 1, 2 and 7, and a receiver's record after
message 7), so these tests check compatibility without Node.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.crypto import ProtocolAddress, protobuf
from tidings.crypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    InvalidSenderKeySessionError,
    InvalidStateError,
    LegacyCiphertextVersionError,
    UnrecognizedMessageVersionError,
)
from tidings.crypto.keys import KeyPair
from tidings.crypto.sender_keys import (
    MAX_FORWARD_JUMPS,
    MAX_MESSAGE_KEYS,
    MAX_SENDER_KEY_STATES,
    SENDER_KEY_RECORD_FORMAT,
    AddressLike,
    InMemorySenderKeyStore,
    InvalidSenderKeySignatureError,
    NoSenderKeyStateError,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SenderKeyRecord,
    SenderKeyStore,
    _aes_cbc_encrypt,
    _message_key_material,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)

DISTRIBUTION_ID = uuid.UUID("3f1c2a9e-8b7d-4e61-a5c0-2d9f7b3e1a44")
SKDM = bytes.fromhex(
    "330a103f1c2a9e8b7d4e61a5c02d9f7b3e1a4410f3aafd9003180022204a97295800e517faff3662faca961d"
    "ab7b652e0ffbc51a3fbcd8ec191d2f62322a2105145b3aae22d63e99915c1f00c53e2a6f0785aab6c7a64c19"
    "1d61e358b3fc4f00"
)
MESSAGES = [
    bytes.fromhex(
        "330a103f1c2a9e8b7d4e61a5c02d9f7b3e1a4410f3aafd9003180022107c2422091442e09fe0f216e02094ed"
        "936ac4d5399665d8398090030003040d102825601dac027bc6433dbc67593426f48891261e9e51f3d4ea03a2"
        "5d161676f46dadd10dc21ace8aea1ccc8466585c8e"
    ),
    bytes.fromhex(
        "330a103f1c2a9e8b7d4e61a5c02d9f7b3e1a4410f3aafd90031801221041c2d5e9f1cd8a991b91c4901a036d"
        "84b5fb44784c92a8831f3c9459cb6a29d94e508fac5e4e2d555353900ea2c4851d81ea167218f3efdcde2c36"
        "9e30254605934d4f5a63d03865551c50a4615c2a87"
    ),
    bytes.fromhex(
        "330a103f1c2a9e8b7d4e61a5c02d9f7b3e1a4410f3aafd900318022230f7568f089a7de45d751b1b9cf78c2a"
        "425cf96d4fa33a98d24ab99eb6dcacdb4ba9050b79a8b9288af04fe8fbd864ce3d3f70c2cc1b233e2749d29d"
        "2d660a7455dd4253862ffdf812cde8e146afd430e30fac1962d618b96a76116ddc4a0c63f87ad865957a594d"
        "5289b40421d217388f"
    ),
    bytes.fromhex(
        "330a103f1c2a9e8b7d4e61a5c02d9f7b3e1a4410f3aafd9003180722103a7d94c83cf82367ccf055281f3966"
        "4d9254cde68566cd6f797544298bcde86ea5393788abc02bdeb9be124a9fde6da18ab5edf471bb5d9c523a34"
        "804b0f23f3334e871989cd4f2f07816cacefd1298a"
    ),
]
PLAINTEXTS = [
    bytes.fromhex(""),
    bytes.fromhex("68656c6c6f2067726f7570"),
    bytes.fromhex(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627"
    ),
    bytes.fromhex("697465726174696f6e20736576656e"),
]
ITERATIONS = [0, 1, 2, 7]
RECEIVER_RECORD = bytes.fromhex(
    "0adb0208f3aafd9003122408081220abeaa53009291fa0ff358a4c87ec4643a51931cfc6eb963cf0868e0c28"
    "7fc4cf1a230a2105145b3aae22d63e99915c1f00c53e2a6f0785aab6c7a64c191d61e358b3fc4f0022221220"
    "eea9a15f06be5175bddc155fef8ce3460402d2ff0d043a0fc8b89809322019652224080112207d79698ccc07"
    "ef13a78b563298db4c5a8283144afa2123200f02271c9689a478222408021220967d2683b8e3cd8df0fcaecb"
    "a3c51a72622d531d88f339eb0b3e3f56670e00fa222408031220a170f43ee78770749dd809618bb6a690e461"
    "434284db4e0fabede4f09cd5c213222408041220bdb5ca2584fd578016af48dd418824e90dff69cbdacc1e71"
    "7643c48322d26087222408051220a0261e820872cc39d1de259f77b00408d59fb3bab7917840b2db89caf745"
    "aca622240806122038c35f2c9027ce99ce496e3b7680befb7a5b78c133fc4e511070b55da30c25a32803"
)


@dataclass(frozen=True)
class Addr:
    name: str
    device_id: int


SENDER = Addr("s", 1)
ME = Addr("me", 2)


class CountingStore(InMemorySenderKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def store_sender_key(
        self, sender: AddressLike, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        self.writes += 1
        super().store_sender_key(sender, distribution_id, record)


def _receiver_of_vectors() -> CountingStore:
    store = CountingStore()
    process_sender_key_distribution_message(
        SENDER, SenderKeyDistributionMessage.deserialize(SKDM), store
    )
    return store


def _pair() -> tuple[InMemorySenderKeyStore, InMemorySenderKeyStore, uuid.UUID]:
    dist = uuid.uuid4()
    sender_store = InMemorySenderKeyStore()
    receiver_store = InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(ME, dist, sender_store)
    process_sender_key_distribution_message(
        ME, SenderKeyDistributionMessage.deserialize(skdm.serialize()), receiver_store
    )
    return sender_store, receiver_store, dist


def _stored(store: InMemorySenderKeyStore, sender: Addr, dist: uuid.UUID) -> bytes:
    record = store.load_sender_key(sender, dist)
    assert record is not None
    return record.serialize()


def _forge(store: InMemorySenderKeyStore, dist: uuid.UUID, jump: int, plaintext: bytes) -> bytes:
    record = store.load_sender_key(ME, dist)
    assert record is not None
    state = record.current_state()
    chain = state._chain
    for _ in range(jump):
        chain = chain.next()
    iv, key = _message_key_material(chain.message_seed())
    assert state.signing_private is not None
    return SenderKeyMessage.create(
        3,
        dist,
        state.chain_id,
        chain.iteration,
        _aes_cbc_encrypt(key, iv, plaintext),
        state.signing_private,
    ).serialize()


def test_store_protocol() -> None:
    assert isinstance(InMemorySenderKeyStore(), SenderKeyStore)


def test_libsignal_distribution_message_parses_and_reencodes() -> None:
    skdm = SenderKeyDistributionMessage.deserialize(SKDM)
    assert skdm.distribution_id == DISTRIBUTION_ID
    assert skdm.iteration == 0
    assert skdm.message_version == 3
    assert len(skdm.chain_key) == 32
    again = SenderKeyDistributionMessage.create(
        3, skdm.distribution_id, skdm.chain_id, 0, skdm.chain_key, skdm.signing_key
    )
    assert again.serialize() == SKDM


def test_libsignal_messages_decrypt_in_any_order() -> None:
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        store = _receiver_of_vectors()
        for i in order:
            message = SenderKeyMessage.deserialize(MESSAGES[i])
            assert message.iteration == ITERATIONS[i]
            assert message.distribution_id == DISTRIBUTION_ID
            assert group_decrypt(MESSAGES[i], store, SENDER) == PLAINTEXTS[i]


def test_libsignal_receiver_record_reads_and_reencodes_exactly() -> None:
    record = SenderKeyRecord.deserialize(RECEIVER_RECORD)
    [state] = record.states
    assert state.iteration == 8
    assert sorted(state.message_keys) == [0, 1, 2, 3, 4, 5, 6]
    assert state.signing_private is None
    fields = protobuf.decode(record.serialize())
    assert fields.optional_uint(15) == SENDER_KEY_RECORD_FORMAT
    assert protobuf.encode([(1, s) for s in fields.repeated_bytes(1)]) == RECEIVER_RECORD
    store = InMemorySenderKeyStore()
    store.store_sender_key(SENDER, DISTRIBUTION_ID, record)
    for i in (2, 0, 1):
        assert group_decrypt(MESSAGES[i], store, SENDER) == PLAINTEXTS[i]
    with pytest.raises(DuplicateMessageError):
        group_decrypt(MESSAGES[3], store, SENDER)


def test_round_trip_and_message_format() -> None:
    sender_store, receiver_store, dist = _pair()
    for i in range(20):
        plaintext = b"x" * i
        message = group_encrypt(sender_store, ME, dist, plaintext)
        raw = message.serialize()
        assert raw[0] == 0x33
        assert message.iteration == i
        assert 0 <= message.chain_id < 2**31
        assert len(message.ciphertext) == (i // 16 + 1) * 16
        assert group_decrypt(raw, receiver_store, ME) == plaintext


def test_distribution_message_reflects_current_iteration() -> None:
    sender_store, _, dist = _pair()
    for _ in range(3):
        group_encrypt(sender_store, ME, dist, b"m")
    skdm = create_sender_key_distribution_message(ME, dist, sender_store)
    assert skdm.iteration == 3
    late = InMemorySenderKeyStore()
    process_sender_key_distribution_message(ME, skdm, late)
    ct = group_encrypt(sender_store, ME, dist, b"late joiner").serialize()
    assert group_decrypt(ct, late, ME) == b"late joiner"


def test_duplicate_is_rejected_and_nothing_committed() -> None:
    store = _receiver_of_vectors()
    assert group_decrypt(MESSAGES[1], store, SENDER) == PLAINTEXTS[1]
    before = _stored(store, SENDER, DISTRIBUTION_ID)
    writes = store.writes
    with pytest.raises(DuplicateMessageError):
        group_decrypt(MESSAGES[1], store, SENDER)
    assert store.writes == writes
    assert _stored(store, SENDER, DISTRIBUTION_ID) == before


def test_bad_signature_rejected_without_commit() -> None:
    store = _receiver_of_vectors()
    before = _stored(store, SENDER, DISTRIBUTION_ID)
    for position in (len(MESSAGES[0]) - 1, len(MESSAGES[0]) - 65, 30):
        tampered = bytearray(MESSAGES[0])
        tampered[position] ^= 0x04
        with pytest.raises(InvalidSenderKeySignatureError):
            group_decrypt(bytes(tampered), store, SENDER)
        with pytest.raises(InvalidMessageError):
            group_decrypt(bytes(tampered), store, SENDER)
    assert _stored(store, SENDER, DISTRIBUTION_ID) == before
    assert group_decrypt(MESSAGES[0], store, SENDER) == PLAINTEXTS[0]


def test_bad_padding_is_invalid_message_and_not_committed() -> None:
    sender_store, receiver_store, dist = _pair()
    record = sender_store.load_sender_key(ME, dist)
    assert record is not None
    state = record.current_state()
    assert state.signing_private is not None
    garbage = SenderKeyMessage.create(
        3, dist, state.chain_id, 0, b"\x00" * 16, state.signing_private
    ).serialize()
    before = _stored(receiver_store, ME, dist)
    with pytest.raises(InvalidMessageError, match="decryption failed"):
        group_decrypt(garbage, receiver_store, ME)
    assert _stored(receiver_store, ME, dist) == before


def test_versions_and_truncation() -> None:
    for first, error in (
        (0x23, LegacyCiphertextVersionError),
        (0x43, UnrecognizedMessageVersionError),
    ):
        with pytest.raises(error):
            SenderKeyMessage.deserialize(bytes([first]) + MESSAGES[0][1:])
        with pytest.raises(error):
            SenderKeyDistributionMessage.deserialize(bytes([first]) + SKDM[1:])
    for length in (0, 1, 64, 65):
        with pytest.raises(InvalidMessageError):
            SenderKeyMessage.deserialize(MESSAGES[0][:length])
    with pytest.raises(InvalidMessageError):
        SenderKeyDistributionMessage.deserialize(SKDM[:64])
    with pytest.raises(InvalidMessageError):
        SenderKeyDistributionMessage.deserialize(SKDM[:-5])


def test_forward_jump_limit() -> None:
    sender_store, receiver_store, dist = _pair()
    before = _stored(receiver_store, ME, dist)
    with pytest.raises(InvalidMessageError, match="too far into the future"):
        group_decrypt(_forge(sender_store, dist, MAX_FORWARD_JUMPS + 1, b"x"), receiver_store, ME)
    assert _stored(receiver_store, ME, dist) == before
    ok = _forge(sender_store, dist, MAX_FORWARD_JUMPS, b"edge")
    assert group_decrypt(ok, receiver_store, ME) == b"edge"
    record = receiver_store.load_sender_key(ME, dist)
    assert record is not None
    assert len(record.current_state().message_keys) == MAX_MESSAGE_KEYS


def test_skipped_keys_are_capped_oldest_first() -> None:
    sender_store, receiver_store, dist = _pair()
    old = [group_encrypt(sender_store, ME, dist, f"m{i}".encode()).serialize() for i in range(3)]
    far = _forge(sender_store, dist, MAX_MESSAGE_KEYS + 10, b"far")
    assert group_decrypt(far, receiver_store, ME) == b"far"
    # Iterations 0..9 were evicted (only the newest 2,000 skipped keys are kept): libsignal
    # reports such messages as duplicates.
    for raw in old:
        with pytest.raises(DuplicateMessageError):
            group_decrypt(raw, receiver_store, ME)
    kept = _forge(sender_store, dist, 10, b"kept")
    assert group_decrypt(kept, receiver_store, ME) == b"kept"


def test_state_limit_and_replacement_rules() -> None:
    dist = uuid.uuid4()
    senders = [InMemorySenderKeyStore() for _ in range(MAX_SENDER_KEY_STATES + 1)]
    receiver = InMemorySenderKeyStore()
    skdms = []
    for store in senders:
        skdm = create_sender_key_distribution_message(ME, dist, store)
        process_sender_key_distribution_message(ME, skdm, receiver)
        skdms.append(skdm)
    record = receiver.load_sender_key(ME, dist)
    assert record is not None
    assert [s.chain_id for s in record.states] == [s.chain_id for s in reversed(skdms[1:])]
    with pytest.raises(NoSenderKeyStateError):
        group_decrypt(group_encrypt(senders[0], ME, dist, b"a").serialize(), receiver, ME)
    ct = group_encrypt(senders[3], ME, dist, b"still known").serialize()
    assert group_decrypt(ct, receiver, ME) == b"still known"
    # Same chain id and key again: the existing state is kept (not reset), moved to the front.
    process_sender_key_distribution_message(ME, skdms[3], receiver)
    record = receiver.load_sender_key(ME, dist)
    assert record is not None
    assert record.states[0].chain_id == skdms[3].chain_id
    assert record.states[0].iteration == 1
    # Same chain id, another signing key: replaced.
    impostor = SenderKeyDistributionMessage.create(
        3, dist, skdms[3].chain_id, 0, bytes(32), KeyPair.generate().public_key
    )
    process_sender_key_distribution_message(ME, impostor, receiver)
    record = receiver.load_sender_key(ME, dist)
    assert record is not None
    assert len([s for s in record.states if s.chain_id == skdms[3].chain_id]) == 1
    assert record.states[0].signing_public == impostor.signing_key
    with pytest.raises(InvalidSenderKeySignatureError):
        group_decrypt(group_encrypt(senders[3], ME, dist, b"x").serialize(), receiver, ME)


def test_missing_states_and_receive_only_records() -> None:
    dist = uuid.uuid4()
    with pytest.raises(NoSenderKeyStateError) as info:
        group_encrypt(InMemorySenderKeyStore(), ME, dist, b"x")
    assert info.value.distribution_id == dist
    assert isinstance(info.value, InvalidSenderKeySessionError)
    receiver = _receiver_of_vectors()
    with pytest.raises(InvalidSenderKeySessionError):
        group_encrypt(receiver, SENDER, DISTRIBUTION_ID, b"x")
    with pytest.raises(NoSenderKeyStateError):
        group_decrypt(MESSAGES[0], InMemorySenderKeyStore(), SENDER)
    with pytest.raises(InvalidSenderKeySessionError):
        SenderKeyRecord().current_state()


def test_record_serialization_is_stable_and_versioned() -> None:
    sender_store, receiver_store, dist = _pair()
    for _ in range(5):
        group_decrypt(_forge(sender_store, dist, 3, b"x"), receiver_store, ME)
        group_encrypt(sender_store, ME, dist, b"y")
    for store in (sender_store, receiver_store):
        raw = _stored(store, ME, dist)
        assert SenderKeyRecord.deserialize(raw).serialize() == raw
    own = SenderKeyRecord.deserialize(_stored(sender_store, ME, dist))
    assert own.current_state().signing_private is not None
    newer = protobuf.encode([(1, protobuf.decode(raw).repeated_bytes(1)[0]), (15, 2)])
    with pytest.raises(InvalidStateError):
        SenderKeyRecord.deserialize(newer)
    for garbage in (b"\xff", b"\x0a\x05\x00", b"\x0a\x00"):
        with pytest.raises(InvalidStateError):
            SenderKeyRecord.deserialize(garbage)
    assert SenderKeyRecord.deserialize(b"").is_empty()


def test_secrets_not_in_repr() -> None:
    sender_store, _, dist = _pair()
    skdm = create_sender_key_distribution_message(ME, dist, sender_store)
    assert skdm.chain_key.hex() not in repr(skdm)
    record = sender_store.load_sender_key(ME, dist)
    assert record is not None
    assert skdm.chain_key.hex() not in repr(record)


@settings(max_examples=25, deadline=None, database=None)
@given(
    plaintexts=st.lists(st.binary(max_size=200), min_size=1, max_size=12),
    data=st.data(),
)
def test_any_delivery_order_decrypts(plaintexts: list[bytes], data: st.DataObject) -> None:
    sender_store, receiver_store, dist = _pair()
    cts = [group_encrypt(sender_store, ME, dist, p).serialize() for p in plaintexts]
    order = data.draw(st.permutations(range(len(cts))))
    for i in order:
        assert group_decrypt(cts[i], receiver_store, ME) == plaintexts[i]
    for i in order[:2]:
        with pytest.raises(DuplicateMessageError):
            group_decrypt(cts[i], receiver_store, ME)


def test_works_with_protocol_address() -> None:
    sender = ProtocolAddress("+group-sender", 3)
    dist = uuid.uuid4()
    mine, theirs = InMemorySenderKeyStore(), InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(sender, dist, mine)
    process_sender_key_distribution_message(sender, skdm, theirs)
    wire = group_encrypt(mine, sender, dist, b"addressed").serialize()
    assert group_decrypt(wire, theirs, sender) == b"addressed"
    assert theirs.load_sender_key(ProtocolAddress("+group-sender", 4), dist) is None
    assert theirs.load_sender_key(sender, uuid.uuid4()) is None
