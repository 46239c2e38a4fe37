"""End-to-end encryption in the app: safety numbers and verification, linking devices both
ways, a contact's changed identity, and the placeholder of a message that did not decrypt."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgspec
import pytest
from tests.integration.conftest import ServerProcess
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen, rows_with

from tidings.app.bubbles import IdentityNote, PlaceholderRow
from tidings.app.harness import AppDriver
from tidings.app.screens.group_info import MemberRow
from tidings.app.screens.link import ApproveDeviceScreen, LinkThisDeviceScreen
from tidings.app.screens.safety import UNDECRYPTABLE_TEXT, SafetyNumberScreen
from tidings.app.screens.settings import SettingsScreen
from tidings.client import Client
from tidings.client.types import Message, MessageAdded, MessageStatus
from tidings.crypto import IdentityKeyPair
from tidings.protocol import keys as wire
from tidings.protocol import routes

pytestmark = pytest.mark.ui


def safety_screen(driver: AppDriver) -> SafetyNumberScreen:
    screen = driver.app.screen("safety")
    assert isinstance(screen, SafetyNumberScreen)
    return screen


async def open_chat_when(driver: AppDriver, conv_id: str, body: str) -> None:
    """Open the chat `conv_id` from the list once `body` arrived in it."""
    listed = chat_list(driver)
    await driver.wait_for(lambda: conv_id in listed.conversations, within=30, what="the chat")
    driver.app.open_chat(conv_id)
    chat = chat_screen(driver)
    await driver.wait_for(
        lambda: rows_with(driver, body) and chat.conversation is not None,
        within=30,
        what=repr(body),
    )


async def test_safety_number_matches_the_peer_and_verifying_toggles(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    carol = await peer("carol")
    driver = await app("alice")
    me = driver.app.require_client()
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "compare numbers?")
    await open_chat_when(driver, conv.id, "compare numbers?")

    # from the direct chat's header
    await driver.tap(chat_screen(driver).ids.header)
    await driver.wait_for(lambda: driver.current == "safety", what="the safety number screen")
    safety = safety_screen(driver)
    await driver.wait_for(lambda: safety.number, what="the safety number")
    expected = await bob.safety_number("alice")
    assert safety.username == "bob"
    assert safety.number == expected == await me.safety_number("bob")
    assert len(expected) == 60 and expected.isdigit()
    assert safety.group_texts() == [expected[i : i + 5] for i in range(0, 60, 5)]
    assert safety.ids.grid.cols == 4
    assert not safety.verified and not safety.changed
    assert safety.ids.verify.text == "Mark as verified"
    shots(driver, "unverified")

    await driver.tap(safety.ids.verify)
    await driver.wait_for(lambda: safety.verified and not safety.busy, what="verified")
    assert await me.is_verified("bob")
    assert "Verified" in safety.ids.verify.text and "clear" in safety.ids.verify.text
    shots(driver, "verified")

    await driver.tap(safety.ids.verify)
    await driver.wait_for(lambda: not safety.verified and not safety.busy, what="cleared")
    assert not await me.is_verified("bob")

    # from a group member's row
    group = await bob.create_group("Crypto club", ["alice", "carol"])
    await bob.send_text(group.id, "hello club")
    await open_chat_when(driver, group.id, "hello club")
    await driver.tap(chat_screen(driver).ids.header)
    await driver.wait_for(lambda: len(driver.find(MemberRow)) == 3, what="the members")
    [carol_row] = driver.find(MemberRow, lambda r: r.username == "carol")
    await driver.tap(carol_row)
    await driver.wait_for(lambda: driver.current == "safety", what="carol's safety number")
    await driver.wait_for(lambda: safety.number and safety.username == "carol", what="carol")
    assert safety.number == await carol.safety_number("alice")
    await driver.tap(safety.ids.back)
    await driver.wait_for(lambda: driver.current == "group_info", what="back to the group")
    [own_row] = driver.find(MemberRow, lambda r: r.is_me)
    await driver.tap(own_row)
    assert driver.current == "group_info"  # no safety number with oneself


async def test_link_this_device_from_onboarding(
    app: AppFactory, peer: PeerFactory, server: ServerProcess, shots: Shots
) -> None:
    alice = await peer("alice")
    bob = await peer("bob")
    driver = await app()
    onboarding = driver.app.screen("onboarding")
    await driver.wait_for(lambda: onboarding.ids.server.text, what="the onboarding")
    await driver.tap(onboarding.ids.link)
    await driver.wait_for(lambda: driver.current == "link_this_device", what="the link screen")
    link = driver.app.screen("link_this_device")
    assert isinstance(link, LinkThisDeviceScreen)
    assert link.ids.server.text == server.url

    # an unreachable server: the error shows inline, nothing else changes
    link.ids.server.text = "http://127.0.0.1:9"
    link.ids.device.text = "tablet"
    await driver.tap(link.ids.start)
    await driver.wait_for(lambda: link.error, what="the error")
    assert link.error.startswith("Could not link this device")
    assert not link.busy and not link.code

    link.ids.server.text = server.url
    await driver.tap(link.ids.start)
    await driver.wait_for(lambda: link.code, what="a link code")
    abandoned = link.code
    await driver.tap(link.ids.start)  # now "Cancel"
    assert not link.code and not link.busy and not link.error

    await driver.tap(link.ids.start)
    await driver.wait_for(lambda: link.code, what="the link code")
    assert link.code != abandoned
    assert link.ids.code_big.text == link.code == link.ids.code_text.text
    assert "." in link.code and link.busy
    shots(driver, "code")

    device_id = await alice.approve_device(link.ids.code_text.text, "tablet")
    await driver.wait_for(lambda: driver.current == "chat_list", within=40, what="the chat list")
    linked = driver.app.require_client()
    assert linked.account.username == "alice"
    assert linked.account.device_id == device_id != alice.account.device_id
    await driver.wait_for(lambda: driver.app.connection_state == "online", what="online")

    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "hello to every device of yours")
    await open_chat_when(driver, conv.id, "hello to every device of yours")
    shots(driver, "received")


async def test_approve_a_new_device_from_settings(
    app: AppFactory, peer: PeerFactory, server: ServerProcess, tmp_path: Path, shots: Shots
) -> None:
    driver = await app("alice")
    bob = await peer("bob")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    await driver.tap(chat_list(driver).ids.settings)
    await driver.wait_for(lambda: driver.current == "settings", what="settings")
    settings = driver.app.screen("settings")
    assert isinstance(settings, SettingsScreen)
    await driver.tap(settings.ids.link_device)
    await driver.wait_for(lambda: driver.current == "approve_device", what="the approve screen")
    approve = driver.app.screen("approve_device")
    assert isinstance(approve, ApproveDeviceScreen)

    approve.ids.code.text = "not-a-code"
    await driver.tap(approve.ids.approve)
    await driver.wait_for(lambda: approve.error, what="the error")
    assert approve.error.startswith("Could not link the device")
    assert not approve.done

    codes: asyncio.Queue[str] = asyncio.Queue()
    waiting = asyncio.create_task(
        Client.link_device(tmp_path / "laptop", server.url, "laptop", on_code=codes.put_nowait)
    )
    code = await asyncio.wait_for(codes.get(), 20)
    approve.ids.code.text = ""
    approve.ids.code.focus = True
    await driver.type_text(code)
    approve.ids.code.focus = False
    approve.ids.device.text = "laptop"
    await driver.tap(approve.ids.approve)
    await driver.wait_for(lambda: approve.done or approve.error, within=30, what="the answer")
    assert not approve.error
    linked = await asyncio.wait_for(waiting, 30)
    try:
        assert linked.account.username == "alice"
        assert f"linked as device {linked.account.device_id}" in approve.done
        assert approve.ids.code.text == ""
        shots(driver, "approved")
        await linked.start()
        await linked.wait_synced(30)
        conv = await bob.open_direct("alice")
        sent = await bob.send_text(conv.id, "for the laptop too")

        async def arrived() -> bool:
            message = await linked.message(sent.id)
            return message is not None and message.body == "for the laptop too"

        await driver.wait_until(arrived, within=30, what="the message on the new device")
    finally:
        await linked.close()


async def _reinstall(client: Client) -> None:
    """Give `client`'s account a new identity key, as a reinstall would (a test double: the
    public API has no way to lose one's keys)."""
    keys = client._store.keys
    keys.set_identity(IdentityKeyPair.generate())
    keys.db.execute("DELETE FROM e2ee_sessions")
    upload = msgspec.structs.replace(keys.initial_upload(), replace_identity=True)
    await client._rest.call(routes.UPLOAD_KEYS, wire.KeyCounts, upload)


async def test_a_verified_contacts_changed_identity_pauses_sending(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    me = driver.app.require_client()
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "before")
    await open_chat_when(driver, conv.id, "before")
    chat = chat_screen(driver)
    await driver.tap(chat.ids.header)  # the header opens the contact's safety number
    safety = safety_screen(driver)
    await driver.wait_for(lambda: safety.number and safety.username == "bob", what="bob")
    old_number = safety.number
    await driver.tap(safety.ids.verify)
    await driver.wait_for(lambda: safety.verified and not safety.busy, what="verified")
    await driver.tap(safety.ids.back)
    await driver.wait_for(lambda: driver.current == "chat", what="the chat")

    await _reinstall(bob)
    await bob.send_text(conv.id, "new phone, same bob")
    await driver.wait_for(lambda: rows_with(driver, "new phone, same bob"), what="the message")
    await driver.wait_for(lambda: driver.find(IdentityNote), what="the changed-number line")
    [note] = driver.find(IdentityNote)
    assert note.username == "bob"
    assert driver.app.identity_changes == {"bob": True}
    await driver.wait_for(lambda: chat.paused, what="sending paused")
    assert "paused" in chat.paused_text

    chat.ids.composer.focus = True
    await driver.type_text("is that you?")
    await driver.press_enter()

    async def held() -> bool:
        page = await me.history(conv.id)
        return any(
            m.body == "is that you?" and m.fail_reason == "identity_changed" for m in page.messages
        )

    await driver.wait_until(held, within=30, what="the message held back")
    assert chat.paused
    shots(driver, "paused")

    await driver.tap(note)
    await driver.wait_for(lambda: driver.current == "safety", what="the safety number")
    await driver.wait_for(lambda: safety.number and not safety.busy, what="the new number")
    assert safety.changed and safety.paused and not safety.verified
    assert safety.number != old_number
    assert safety.number == await bob.safety_number("alice")
    assert safety.ids.notice.opacity == 1
    shots(driver, "changed")

    await driver.tap(safety.ids.verify)
    await driver.wait_for(lambda: safety.verified and not safety.busy, what="verified again")
    assert not safety.changed and driver.app.identity_changes == {}
    await driver.tap(safety.ids.back)
    await driver.wait_for(lambda: driver.current == "chat", what="the chat")
    await driver.wait_for(lambda: not chat.paused, what="sending resumed")

    [failed] = rows_with(driver, "is that you?")
    assert failed.message.status is MessageStatus.FAILED
    await driver.tap(failed.bubble)

    async def delivered() -> bool:
        page = await bob.history(conv.id)
        return any(m.body == "is that you?" for m in page.messages)

    await driver.wait_until(delivered, within=30, what="the retried message at bob")


async def test_an_undecryptable_message_shows_a_muted_placeholder(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "readable")
    await open_chat_when(driver, conv.id, "readable")
    [readable] = rows_with(driver, "readable")
    sent = readable.message
    # the core stores such a message with kind "undecryptable" and this body (docs/client-api.md)
    placeholder = Message(
        id=uuid.uuid4(),
        conv_id=conv.id,
        seq=(sent.seq or 0) + 1,
        sender_id=bob.account.account_id,
        sender_name="bob",
        is_own=False,
        kind="undecryptable",
        body=UNDECRYPTABLE_TEXT,
        reply_to=None,
        reply_preview=None,
        reactions=(),
        status=MessageStatus.DELIVERED,
        fail_reason=None,
        created_at=sent.created_at + 1,
    )
    driver.app.dispatch_client_event(MessageAdded(placeholder))
    await driver.wait_for(lambda: driver.find(PlaceholderRow), what="the placeholder")
    [row] = driver.find(PlaceholderRow)
    assert UNDECRYPTABLE_TEXT in row.body.text
    assert not rows_with(driver, UNDECRYPTABLE_TEXT)  # not an ordinary bubble
    shots(driver, "placeholder")
