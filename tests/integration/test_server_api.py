"""REST API of the real server process: accounts, auth, conversations, groups, errors."""

from __future__ import annotations

import base64
import re

import httpx
import pytest
import websockets
import websockets.asyncio.client

from tidings.protocol import decode_system_event


async def test_health_needs_no_auth(server, server_kit):
    kit = server_kit(server)
    r = await kit.http.get("/v1/health")
    assert r.status_code == 200
    assert r.json()["ok"] is True


async def test_account_creation_and_me(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice", "laptop")
    assert alice.device_id == 1
    _key, dot, secret = alice.token.partition(".")
    assert dot and len(secret) >= 43  # 256-bit secret, base64url

    me = (await kit.http.get("/v1/me", headers=alice.headers)).json()
    assert me == {
        "account_id": alice.account_id,
        "username": "alice",
        "device_id": 1,
        "device_name": "laptop",
    }
    user = await kit.http.get("/v1/users/alice", headers=alice.headers)
    assert user.json() == {"account_id": alice.account_id, "username": "alice"}
    missing = await kit.http.get("/v1/users/nobody", headers=alice.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


async def test_username_rules(server, server_kit):
    kit = server_kit(server)
    await kit.account("bob")
    taken = await kit.http.post("/v1/accounts", json={"username": "bob"})
    assert taken.status_code == 409 and taken.json()["code"] == "username_taken"
    for bad in ("ab", "Bob", "b" * 33, "bo b", "bob!"):
        r = await kit.http.post("/v1/accounts", json={"username": bad})
        assert r.status_code == 400, bad
        assert r.json()["code"] == "invalid_username"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"username": 5}', b'{"username": "carol", "extra": 1}', b""],
)
async def test_bad_bodies_get_api_errors(server, server_kit, body):
    kit = server_kit(server)
    r = await kit.http.post(
        "/v1/accounts", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500
    error = r.json()
    assert set(error) == {"code", "message"}
    assert error["code"] in ("bad_frame", "invalid_username")


async def test_framework_errors_have_the_same_shape(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice")
    conv = await kit.group(alice, "g", [])
    r = await kit.http.get(
        f"/v1/conversations/{conv['id']}/messages?after=x", headers=alice.headers
    )
    assert r.status_code == 400 and r.json()["code"] == "bad_frame"
    r = await kit.http.get("/v1/no/such/route")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await kit.http.put("/v1/accounts")
    assert r.status_code == 405 and set(r.json()) == {"code", "message"}


async def test_bad_tokens_are_refused_and_tokens_never_logged(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice")
    key, _, secret = alice.token.partition(".")
    for header in (
        None,
        "Bearer",
        "Basic abc",
        "Bearer nodot",
        f"Bearer {key}.{'A' * 43}",
        f"Bearer other.{secret}",
    ):
        headers = {"Authorization": header} if header else {}
        r = await kit.http.get("/v1/me", headers=headers)
        assert r.status_code == 401, header
        assert r.json()["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"

    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.asyncio.client.connect(
            server.ws_url, additional_headers={"Authorization": f"Bearer {key}.x"}
        )
    assert refused.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus):
        await websockets.asyncio.client.connect(server.ws_url)

    peer = await kit.connect(alice)
    await peer.hello()
    await peer.ping()
    log = server.log_text()
    assert secret not in log and alice.token not in log and key not in log


async def test_the_websocket_runs_behind_request_ids_and_the_connections_gauge(server, server_kit):
    # The server runs the WebSocket gateway in front of the REST framework: the request id
    # and the connections gauge its middleware gives every request still apply to it.
    kit = server_kit(server)
    alice = await kit.account("alice")
    peer = await kit.connect(alice)
    assert re.fullmatch(r"[0-9a-f]{16}", peer.ws.response.headers["x-request-id"])
    await peer.hello()
    await peer.ping()
    metrics = (await kit.http.get("/metrics")).text
    assert re.search(r"^tidings_websocket_connections 1\.0$", metrics, re.M), metrics


async def test_direct_conversation_is_unique_per_pair(server, server_kit):
    kit = server_kit(server)
    alice, bob, carol = [await kit.account(n) for n in ("alice", "bob", "carol")]
    first = await kit.http.post(
        "/v1/conversations/direct", json={"username": "bob"}, headers=alice.headers
    )
    assert first.status_code == 201
    conv = first.json()
    assert conv["kind"] == "direct" and conv["last_seq"] == 1 and conv["title"] == ""
    assert {m["username"] for m in conv["members"]} == {"alice", "bob"}

    again = await kit.http.post(
        "/v1/conversations/direct", json={"username": "alice"}, headers=bob.headers
    )
    assert again.status_code == 200 and again.json()["id"] == conv["id"]
    assert (await kit.direct(alice, carol))["id"] != conv["id"]

    # A direct conversation with yourself is your Note to Self: one member, created once.
    self_chat = await kit.http.post(
        "/v1/conversations/direct", json={"username": "alice"}, headers=alice.headers
    )
    assert self_chat.status_code == 201
    note = self_chat.json()
    assert [m["username"] for m in note["members"]] == ["alice"]
    self_again = await kit.http.post(
        "/v1/conversations/direct", json={"username": "alice"}, headers=alice.headers
    )
    assert self_again.status_code == 200 and self_again.json()["id"] == note["id"]
    nobody = await kit.http.post(
        "/v1/conversations/direct", json={"username": "nobody"}, headers=alice.headers
    )
    assert nobody.status_code == 404

    # It starts with a `created` system envelope at seq 1.
    page = (
        await kit.http.get(f"/v1/conversations/{conv['id']}/messages", headers=bob.headers)
    ).json()
    assert [e["seq"] for e in page["envelopes"]] == [1]
    assert page["envelopes"][0]["kind"] == "system"

    listed = (await kit.http.get("/v1/conversations", headers=alice.headers)).json()
    carol_chat = (await kit.direct(alice, carol))["id"]
    assert {c["id"] for c in listed} == {conv["id"], carol_chat, note["id"]}

    outsider = await kit.http.get(f"/v1/conversations/{conv['id']}", headers=carol.headers)
    assert outsider.status_code == 403 and outsider.json()["code"] == "not_member"
    unknown = await kit.http.get("/v1/conversations/nope", headers=carol.headers)
    assert unknown.status_code == 404


async def test_group_membership_rules(server, server_kit):
    kit = server_kit(server)
    alice, bob, carol, dave = [await kit.account(n) for n in ("alice", "bob", "carol", "dave")]
    conv = await kit.group(alice, "Hikers", [bob])
    gid = conv["id"]
    roles = {m["username"]: m["role"] for m in conv["members"]}
    assert roles == {"alice": "admin", "bob": "member"}
    assert conv["title"] == "Hikers" and conv["last_seq"] == 1

    # Only admins add and remove.
    r = await kit.http.post(
        f"/v1/groups/{gid}/members", json={"usernames": ["carol"]}, headers=bob.headers
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await kit.http.post(
        f"/v1/groups/{gid}/members", json={"usernames": ["carol", "dave"]}, headers=alice.headers
    )
    assert r.status_code == 200
    assert {m["username"] for m in r.json()["members"]} == {"alice", "bob", "carol", "dave"}
    r = await kit.http.post(
        f"/v1/groups/{gid}/members", json={"usernames": ["carol"]}, headers=alice.headers
    )
    assert r.status_code == 409 and r.json()["code"] == "already_member"
    r = await kit.http.delete(f"/v1/groups/{gid}/members/dave", headers=bob.headers)
    assert r.status_code == 403
    r = await kit.http.delete(f"/v1/groups/{gid}/members/dave", headers=alice.headers)
    assert r.status_code == 200
    assert "dave" not in {m["username"] for m in r.json()["members"]}
    r = await kit.http.get(f"/v1/conversations/{gid}", headers=dave.headers)
    assert r.status_code == 403

    # The last admin leaves: the oldest member (bob) becomes admin.
    r = await kit.http.post(f"/v1/groups/{gid}/leave", headers=alice.headers)
    assert r.status_code == 204
    conv = (await kit.http.get(f"/v1/conversations/{gid}", headers=bob.headers)).json()
    assert {m["username"]: m["role"] for m in conv["members"]} == {
        "bob": "admin",
        "carol": "member",
    }

    # Every change is a system envelope in the conversation's own seq stream.
    page = (await kit.http.get(f"/v1/conversations/{gid}/messages", headers=bob.headers)).json()
    events = [decode_system_event(_b64(e["payload"])).action for e in page["envelopes"]]
    assert events == ["created", "member_added", "member_removed", "member_left"]
    assert [e["seq"] for e in page["envelopes"]] == [1, 2, 3, 4]

    direct = await kit.direct(bob, carol)
    r = await kit.http.post(f"/v1/groups/{direct['id']}/leave", headers=bob.headers)
    assert r.status_code == 400 and r.json()["code"] == "not_a_group"


async def test_group_cap_is_enforced(server_factory, server_kit):
    server = server_factory(env={"TIDINGS_MEMBER_CAP": "3"})
    kit = server_kit(server)
    a, b = [await kit.account(n) for n in ("ann", "ben")]
    for name in ("cat", "dan"):
        await kit.account(name)
    r = await kit.http.post(
        "/v1/groups", json={"title": "big", "members": ["ben", "cat", "dan"]}, headers=a.headers
    )
    assert r.status_code == 409 and r.json()["code"] == "group_full"
    conv = await kit.group(a, "small", [b])
    r = await kit.http.post(
        f"/v1/groups/{conv['id']}/members", json={"usernames": ["cat", "dan"]}, headers=a.headers
    )
    assert r.status_code == 409 and r.json()["code"] == "group_full"
    # Nothing of the refused request was stored.
    after = (await kit.http.get(f"/v1/conversations/{conv['id']}", headers=a.headers)).json()
    assert len(after["members"]) == 2 and after["last_seq"] == 1
    r = await kit.http.post(
        f"/v1/groups/{conv['id']}/members", json={"usernames": ["cat"]}, headers=a.headers
    )
    assert r.status_code == 200 and len(r.json()["members"]) == 3


async def test_registration_can_be_closed(server_factory, server_kit):
    server = server_factory(env={"TIDINGS_REGISTRATION_OPEN": "false"})
    kit = server_kit(server)
    r = await kit.http.post("/v1/accounts", json={"username": "alice"})
    assert r.status_code == 403 and r.json()["code"] == "registration_closed"


async def test_account_creation_is_rate_limited_per_address(server_factory, server_kit):
    server = server_factory(env={"TIDINGS_ACCOUNTS_PER_MINUTE": "2"})
    kit = server_kit(server)
    tokens = []
    for name in ("ann", "ben"):
        r = await kit.http.post("/v1/accounts", json={"username": name})
        assert r.status_code == 201
        tokens.append(r.json()["token"])
    r = await kit.http.post("/v1/accounts", json={"username": "cid"})
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    assert (await kit.http.get("/v1/users/cid", headers=headers)).status_code == 404
    assert (await kit.http.get("/v1/users/ben", headers=headers)).status_code == 200


async def test_data_survives_sigkill(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice")
    bob = await kit.account("bob")
    conv = await kit.direct(alice, bob)
    server.kill()
    server.start()
    r = await kit.http.get(f"/v1/conversations/{conv['id']}", headers=alice.headers)
    assert r.status_code == 200
    with pytest.raises(httpx.HTTPStatusError):
        (await kit.http.post("/v1/accounts", json={"username": "alice"})).raise_for_status()


def _b64(text: str) -> bytes:
    return base64.b64decode(text)
