"""The server's rules on plain values, without a store."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator

import pytest

from tidings.protocol import ErrorCode
from tidings.protocol.digest import device_address as address
from tidings.protocol.keys import KeyUpload, KyberPreKey, SignedPreKey
from tidings.server.domain import (
    ConversationRecord,
    MemberRecord,
    NewMessage,
    Refused,
    StaleDeviceList,
)
from tidings.server.domain import conversations as conv_rules
from tidings.server.domain.devices import check_device_list, may_reach, plan_device_send
from tidings.server.domain.keys import (
    IdentityChange,
    first_upload_keys,
    identity_change,
    replaced_devices,
)
from tidings.server.domain.provisioning import check_approval, check_fetch


@contextlib.contextmanager
def refused(code: ErrorCode) -> Iterator[None]:
    with pytest.raises(Refused) as caught:
        yield
    assert caught.value.code == code


def digest(*addresses: str) -> bytes:
    return hashlib.sha256("\n".join(sorted(addresses)).encode()).digest()


def send(**fields) -> NewMessage:
    base = {
        "id": uuid.uuid4(),
        "conv": "c1",
        "sender": "alice",
        "sender_device": 1,
        "payload": b"",
        "mentions": (),
        "ts": 0,
    }
    return NewMessage(**{**base, **fields})


DEVICES = {"alice": [1, 2], "bob": [1], "carol": []}


# --------------------------------------------------------------------------- device lists


def test_address_is_account_colon_device():
    assert address("alice", 12) == "alice:12"


def test_a_direct_send_covering_every_other_device_passes():
    payloads = ((("alice", 2), b"a2"), (("bob", 1), b"b1"))
    check_device_list("direct", send(device_payloads=payloads), DEVICES)


def test_a_direct_send_with_missing_and_extra_devices_is_stale():
    payloads = ((("bob", 1), b"b1"), (("bob", 7), b"ghost"), (("alice", 1), b"me"))
    with pytest.raises(StaleDeviceList) as stale:
        check_device_list("direct", send(device_payloads=payloads), DEVICES)
    assert stale.value.missing == ["alice:2"]
    assert stale.value.extra == ["alice:1", "bob:7"]  # the sending device is not a recipient
    assert stale.value.devices == {"alice": [1, 2], "bob": [1], "carol": []}


def test_payload_shapes_must_fit_the_conversation_kind():
    with refused(ErrorCode.BAD_FRAME):
        check_device_list("direct", send(devices_digest=digest("bob:1")), DEVICES)
    with refused(ErrorCode.BAD_FRAME):
        check_device_list("group", send(device_payloads=((("bob", 1), b"x"),)), DEVICES)


def test_a_group_send_needs_the_digest_of_every_other_device():
    check_device_list("group", send(devices_digest=digest("alice:2", "bob:1")), DEVICES)
    with pytest.raises(StaleDeviceList) as stale:
        check_device_list("group", send(devices_digest=digest("bob:1")), DEVICES)
    assert (stale.value.missing, stale.value.extra) == ([], [])
    assert stale.value.devices == DEVICES
    # Sorted as plain strings: "a:10" before "a:2".
    many = {"a": [2, 10]}
    check_device_list("group", send(sender="z", devices_digest=digest("a:10", "a:2")), many)
    # No device at all: the digest of the empty string.
    check_device_list("group", send(devices_digest=hashlib.sha256(b"").digest()), {"alice": [1]})


def test_the_digest_is_the_protocol_one():
    from tidings.protocol.digest import devices_digest

    assert devices_digest(["bob:1", "alice:2"]) == digest("alice:2", "bob:1")


# --------------------------------------------------------------------------- to-device messages


def test_who_may_reach_whom():
    assert may_reach("alice", "alice", shares_conversation=False)
    assert may_reach("alice", "bob", shares_conversation=True)
    assert not may_reach("alice", "eve", shares_conversation=False)


def test_a_device_send_is_delivered_only_to_reachable_keyed_other_devices():
    messages = [
        ("bob:1", ("bob", 1), b"to bob"),
        ("alice:2", ("alice", 2), b"to me"),
        ("alice:1", ("alice", 1), b"to myself"),
        ("eve:1", ("eve", 1), b"stranger"),
        ("bob:9", ("bob", 9), b"no keys"),
    ]
    keyed = {("bob", 1), ("alice", 1), ("alice", 2), ("eve", 1)}
    plan = plan_device_send(("alice", 1), messages, {"bob"}, keyed)
    assert plan.deliver == ((("bob", 1), b"to bob"), (("alice", 2), b"to me"))
    assert plan.unknown == ("alice:1", "bob:9", "eve:1")


# --------------------------------------------------------------------------- conversations


def member(account: str, role: str = "member") -> MemberRecord:
    return MemberRecord(account, account, role, 1, 0, 0)  # type: ignore[arg-type]


GROUP = ConversationRecord("g", "group", "team", 3, 0, (member("alice", "admin"), member("bob")))


def test_direct_key_ignores_order():
    assert conv_rules.direct_key("b", "a") == conv_rules.direct_key("a", "b") == "a|b"


def test_group_actions_need_a_group_a_member_and_for_some_an_admin():
    assert conv_rules.group_for(GROUP, "alice", admin=True) is GROUP
    assert conv_rules.group_for(GROUP, "bob", admin=False) is GROUP
    with refused(ErrorCode.FORBIDDEN):
        conv_rules.group_for(GROUP, "bob", admin=True)
    with refused(ErrorCode.NOT_MEMBER):
        conv_rules.group_for(GROUP, "eve", admin=False)
    with refused(ErrorCode.NOT_FOUND):
        conv_rules.group_for(None, "alice", admin=False)
    direct = ConversationRecord("d", "direct", "", 1, 0, (member("alice"), member("bob")))
    with refused(ErrorCode.NOT_A_GROUP):
        conv_rules.group_for(direct, "alice", admin=False)


def test_membership_and_caps():
    conv_rules.require_member(exists=True, is_member=True)
    with refused(ErrorCode.NOT_MEMBER):
        conv_rules.require_member(exists=True, is_member=False)
    with refused(ErrorCode.NOT_FOUND):
        conv_rules.require_member(exists=False, is_member=False)
    assert conv_rules.new_group_members("a", ["b", "a", "c", "b"], cap=3) == ["b", "c"]
    with refused(ErrorCode.GROUP_FULL):
        conv_rules.new_group_members("a", ["b", "c", "d"], cap=3)
    conv_rules.check_additions(GROUP, ["carol"], cap=3)
    with refused(ErrorCode.ALREADY_MEMBER):
        conv_rules.check_additions(GROUP, ["carol", "bob"], cap=10)
    with refused(ErrorCode.GROUP_FULL):
        conv_rules.check_additions(GROUP, ["carol", "dave"], cap=3)
    with refused(ErrorCode.NOT_FOUND):
        conv_rules.check_removal(GROUP, "eve")
    assert conv_rules.member_ids(GROUP) == ("alice", "bob")
    assert conv_rules.initial_marks(5) == 4


def test_marks_rise_capped_at_the_head_and_never_fall():
    move = conv_rules.raise_marks(2, 1, 10, delivered=5, read=0)
    assert move == conv_rules.MarksMove(delivered=5, read=1, low=2, high=5)
    move = conv_rules.raise_marks(5, 1, 10, delivered=20, read=20)
    assert move == conv_rules.MarksMove(delivered=10, read=10, low=1, high=10)
    # Read alone raises delivered too.
    move = conv_rules.raise_marks(3, 3, 10, delivered=0, read=6)
    assert move == conv_rules.MarksMove(delivered=6, read=6, low=3, high=6)
    assert conv_rules.raise_marks(5, 4, 10, delivered=3, read=2) is None


# --------------------------------------------------------------------------- keys


def upload(identity: bytes, *, first: bool = True, replace: bool = False) -> KeyUpload:
    return KeyUpload(
        identity_key=identity,
        registration_id=1,
        signed_prekey=SignedPreKey(1, b"s", b"sig") if first else None,
        kyber_last_resort=KyberPreKey(2, b"k", b"sig") if first else None,
        replace_identity=replace,
    )


def test_identity_changes():
    assert identity_change(None, upload(b"new")) is IdentityChange.SET
    assert identity_change(b"old", upload(b"old")) is IdentityChange.KEEP
    assert identity_change(b"old", upload(b"old", replace=True)) is IdentityChange.KEEP
    assert identity_change(b"old", upload(b"new", replace=True)) is IdentityChange.REPLACE
    with refused(ErrorCode.CONFLICT):
        identity_change(b"old", upload(b"new"))
    assert replaced_devices([1, 2, 3], uploader=2) == [1, 3]


def test_a_first_upload_needs_a_signed_and_a_last_resort_kyber_prekey():
    signed, kyber = first_upload_keys(upload(b"i"))
    assert (signed.id, kyber.id) == (1, 2)
    with refused(ErrorCode.BAD_FRAME):
        first_upload_keys(upload(b"i", first=False))


# --------------------------------------------------------------------------- provisioning


def approval(**changes) -> dict:
    base = {
        "stored_key": b"eph",
        "expires_at": 100,
        "approved": False,
        "given_key": b"eph",
        "devices": 1,
        "max_devices": 3,
        "now": 50,
    }
    return {**base, **changes}


def test_approval_rules():
    check_approval(**approval())
    for changes, code in [
        ({"now": 100}, ErrorCode.EXPIRED),
        ({"approved": True}, ErrorCode.CONFLICT),
        ({"given_key": b"other"}, ErrorCode.CONFLICT),
        ({"devices": 3}, ErrorCode.FORBIDDEN),
    ]:
        with refused(code):
            check_approval(**approval(**changes))


def test_fetch_rules():
    ok = {"stored_hash": b"h", "given_hash": b"h", "expires_at": 100, "approved": True, "now": 50}
    check_fetch(**ok)
    for changes, code in [
        ({"given_hash": b"x"}, ErrorCode.UNAUTHORIZED),
        ({"now": 100}, ErrorCode.EXPIRED),
        ({"approved": False}, ErrorCode.PENDING),
    ]:
        with refused(code):
            check_fetch(**{**ok, **changes})
