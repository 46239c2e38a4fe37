"""The shared types: a wake has no room for content, registrations keep tokens out of logs."""

from __future__ import annotations

import dataclasses

import pytest

from tidings.server.push.log import LogProvider
from tidings.server.push.provider import (
    Platform,
    Priority,
    PushProvider,
    PushRegistration,
    Wake,
    WakeKind,
    parse_retry_after,
)

from .conftest import Apns, Fcm, WebPush


def test_a_wake_has_no_field_for_content() -> None:
    names = {f.name for f in dataclasses.fields(Wake)}
    assert names == {"kind", "priority", "conversation_hint", "counter"}


def test_wake_bounds() -> None:
    with pytest.raises(ValueError, match="64"):
        Wake(WakeKind.ALERT, Priority.HIGH, "x" * 65)
    with pytest.raises(ValueError, match="counter"):
        Wake(WakeKind.ALERT, Priority.HIGH, counter=-1)


def test_registration_repr_hides_token_and_keys() -> None:
    reg = PushRegistration(
        Platform.WEBPUSH, "https://push.example/secret-endpoint", p256dh="PUB", auth="AUTHSECRET"
    )
    text = repr(reg)
    assert "secret-endpoint" not in text and "AUTHSECRET" not in text
    with pytest.raises(ValueError, match="p256dh"):
        PushRegistration(Platform.WEBPUSH, "https://push.example/x")
    with pytest.raises(ValueError, match="token"):
        PushRegistration(Platform.APNS, "")


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-5") is None


def test_every_provider_satisfies_the_protocol(apns: Apns, fcm: Fcm, webpush: WebPush) -> None:
    for provider in (apns.provider, fcm.provider, webpush.provider, LogProvider()):
        assert isinstance(provider, PushProvider)
