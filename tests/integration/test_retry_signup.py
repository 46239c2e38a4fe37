"""Sign-up and device linking are safe to retry: a proxy in front of a real server lets the
request through and throws the server's answer away, the client tries again, and it ends
with one account (one device) instead of ``username_taken`` or a ghost device."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx
import pytest
from tests.forwarder import Forwarder
from tests.integration.conftest import ServerProcess
from tests.integration.store_inspection import inspector

from tidings.client import Client
from tidings.client.errors import Conflict, NotConnected


class AnswerCutter(Forwarder):
    """Forwards 127.0.0.1 connections to ``target_port``; the first ``budget[rule]`` answers
    to a request whose first line starts with ``rule[0]`` and whose answer starts with
    ``rule[1]`` are dropped: the server did the work, the client sees the connection reset."""

    def __init__(self, target_port: int, budget: dict[tuple[bytes, bytes], int]) -> None:
        super().__init__(target_port)
        self.budget = dict(budget)
        self.cut = 0

    async def relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        last_request = [b""]

        async def up() -> None:
            while data := await reader.read(65536):
                if data[:8].split(b" ")[0] in (b"GET", b"POST", b"PUT", b"DELETE"):
                    last_request[0] = data.split(b"\r\n", 1)[0]
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def down() -> None:
            while data := await up_reader.read(65536):
                for rule, left in self.budget.items():
                    if (
                        left > 0
                        and last_request[0].startswith(rule[0])
                        and data.startswith(rule[1])
                    ):
                        self.budget[rule] = left - 1
                        self.cut += 1
                        for side in (writer, up_writer):
                            side.transport.abort()
                        return
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(up(), down())


SIGNUP = (b"POST /v1/accounts ", b"HTTP/1.1 20")


async def _me(server: ServerProcess, token: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        me: dict[str, object] = answer.json()
        return me


async def test_signup_whose_answer_is_lost_is_retried_into_the_same_account(
    server: ServerProcess, tmp_path: Path
) -> None:
    async with AnswerCutter(server.port, {SIGNUP: 2}) as proxy:
        client = await Client.create_account(tmp_path / "alice", proxy.url, "alice")
        try:
            assert proxy.cut == 2  # two answers were lost; the third try got through
            account = client.account
        finally:
            await client.close()
    assert account.device_id == 1
    token = (tmp_path / "alice" / "token").read_text()
    me = await _me(server, token)
    assert me["account_id"] == account.account_id and me["device_id"] == 1
    assert inspector(server).count("accounts", username="alice") == 1
    assert not (tmp_path / "alice" / "signup.json").exists()
    # Someone else (another token) still finds the name taken.
    with pytest.raises(Conflict) as taken:
        await Client.create_account(tmp_path / "mallory", server.url, "alice")
    assert taken.value.code == "username_taken"
    assert not (tmp_path / "mallory" / "token").exists()


async def test_a_signup_left_unfinished_is_finished_by_running_it_again(
    server: ServerProcess, tmp_path: Path
) -> None:
    profile = tmp_path / "bob"
    async with AnswerCutter(server.port, {SIGNUP: 100}) as proxy:
        with pytest.raises(NotConnected) as lost:
            await Client.create_account(profile, proxy.url, "bob")
        assert "run the same command again" in lost.value.message
        assert (profile / "token").exists() and (profile / "signup.json").exists()
        url = proxy.url
    assert inspector(server).count("accounts", username="bob") == 1  # made, answer lost
    # The network heals (same address, nothing cut now): the same sign-up gets the account.
    port = int(url.rsplit(":", 1)[1])
    async with _forward(port, server.port):
        client = await Client.create_account(profile, url, "bob")
        await client.close()
    me = await _me(server, (profile / "token").read_text())
    assert me["username"] == "bob" and me["device_id"] == 1
    assert inspector(server).count("accounts", username="bob") == 1


@contextlib.asynccontextmanager
async def _forward(port: int, target: int):  # type: ignore[no-untyped-def]
    """A faithful forwarder on ``port`` (the address the profile was made with)."""
    cutter = AnswerCutter(target, {})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    cutter._server = await asyncio.start_server(cutter._serve, sock=sock)
    try:
        yield cutter
    finally:
        await cutter.__aexit__()


async def test_linking_whose_answers_are_lost_converges_on_one_device(
    server: ServerProcess, tmp_path: Path
) -> None:
    alice = await Client.create_account(tmp_path / "a1", server.url, "alice")
    budget = {
        (b"POST /v1/provisioning ", b"HTTP/1.1 201"): 1,  # the new request
        (b"POST /v1/provisioning/", b"HTTP/1.1 200"): 1,  # the approval
        (b"GET /v1/provisioning/", b"HTTP/1.1 200"): 1,  # the result
    }
    try:
        async with AnswerCutter(server.port, budget) as proxy:
            alice_via_proxy = alice
            codes: asyncio.Queue[str] = asyncio.Queue()
            link = asyncio.create_task(
                Client.link_device(tmp_path / "a2", proxy.url, on_code=codes.put_nowait)
            )
            code = await asyncio.wait_for(codes.get(), 30)
            # The approving device talks through the proxy as well.
            approver = await Client.open(tmp_path / "a1")
            approver._rest.http.base_url = httpx.URL(proxy.url)  # type: ignore[attr-defined]
            try:
                device_id = await approver.approve_device(code)
            finally:
                await approver.close()
            linked = await asyncio.wait_for(link, 60)
            assert proxy.cut == 3
        try:
            assert linked.account.device_id == device_id == 2
            assert linked.account.account_id == alice_via_proxy.account.account_id
            me = await _me(server, (tmp_path / "a2" / "token").read_text())
            assert me["device_id"] == 2
        finally:
            await linked.close()
    finally:
        await alice.close()
    devices = inspector(server).rows("devices", "device_id", account_id=alice.account.account_id)
    assert sorted(d for (d,) in devices) == [1, 2]
