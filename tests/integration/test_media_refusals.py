"""What the media routes and the local store's blob endpoint refuse, at the REST level against a
real server: expired URLs, a reused upload URL, a wrong length, oversize slots and quota; the
client's view of a refused upload (the message ends ``failed`` with the reason); the GC of an
abandoned upload; and the blob endpoint's own, longer body deadline (a slow but steady part
PUT outlives the server's ``body_timeout``, a JSON body does not)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.conftest import ServerFactory, ServerKit, ServerProcess, TestAccount
from tests.integration.media_kit import clients, document, wait_for

from tidings.client.types import MessageStatus

pytestmark = pytest.mark.timeout(120)

KiB = 1024


async def slot(kit: ServerKit, who: TestAccount, size: int) -> httpx.Response:
    return await kit.http.post(
        "/v1/media/uploads", json={"size": size, "kind": "file"}, headers=who.headers
    )


async def new_slot(kit: ServerKit, who: TestAccount, size: int) -> dict[str, Any]:
    answer = await slot(kit, who, size)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def put(kit: ServerKit, url: str, data: bytes, **headers: str) -> httpx.Response:
    return await kit.http.put(
        url, content=data, headers={"Content-Type": "application/octet-stream", **headers}
    )


async def upload(kit: ServerKit, who: TestAccount, data: bytes) -> str:
    made = await new_slot(kit, who, len(data))
    for part in made["parts"]:
        done = await put(kit, part["url"], data[part["offset"] : part["offset"] + part["length"]])
        assert done.status_code < 300, done.text
    finished = await kit.http.post(
        f"/v1/media/uploads/{made['blob_id']}/complete", headers=who.headers
    )
    assert finished.status_code == 200, finished.text
    return str(made["blob_id"])


@pytest.fixture
async def kit_for(
    server_kit: Callable[[ServerProcess], ServerKit], server_factory: ServerFactory
) -> AsyncIterator[Callable[[dict[str, str]], ServerKit]]:
    def make(env: dict[str, str]) -> ServerKit:
        return server_kit(server_factory(env={"TIDINGS_MEDIA_STORE": "local", **env}))

    yield make


async def test_expired_urls_are_refused(kit_for: Callable[[dict[str, str]], ServerKit]) -> None:
    kit = kit_for(
        {"TIDINGS_MEDIA_UPLOAD_URL_SECONDS": "1", "TIDINGS_MEDIA_DOWNLOAD_URL_SECONDS": "1"}
    )
    alice = await kit.account("alice")
    data = b"\x01" * 4000
    stale = await new_slot(kit, alice, len(data))
    blob_id = await upload(kit, alice, data)  # in time: works
    link = await kit.http.get(f"/v1/media/{blob_id}", headers=alice.headers)
    assert link.status_code == 200, link.text
    await asyncio.sleep(2.2)
    (part,) = stale["parts"]
    late = await put(kit, part["url"], data)
    assert late.status_code == 403, late.text
    assert (await kit.http.get(link.json()["url"])).status_code == 403
    # a fresh download URL works again
    fresh = await kit.http.get(f"/v1/media/{blob_id}", headers=alice.headers)
    got = await kit.http.get(fresh.json()["url"])
    assert got.status_code == 200 and got.content == data


async def test_reused_url_wrong_length_and_oversize_are_refused(
    kit_for: Callable[[dict[str, str]], ServerKit],
) -> None:
    kit = kit_for({"TIDINGS_MEDIA_MAX_SIZE": str(200 * KiB)})
    alice = await kit.account("alice")
    data = bytes(range(256)) * 40
    made = await new_slot(kit, alice, len(data))
    (part,) = made["parts"]
    # a wrong length: shorter, and longer, than the length the URL was signed for
    short = await put(kit, part["url"], data[:-1])
    assert short.status_code == 400, short.text
    longer = await put(kit, part["url"], data + b"x")
    assert longer.status_code in (400, 413), longer.text
    status = await kit.http.get(f"/v1/media/uploads/{made['blob_id']}", headers=alice.headers)
    assert status.json()["parts"] == [], "a refused body must not count as received"
    # the right length: accepted once, then the URL is spent
    assert (await put(kit, part["url"], data)).status_code < 300
    again = await put(kit, part["url"], data)
    assert again.status_code == 409, again.text
    # a tampered signature is refused outright
    forged = part["url"].replace("sig=", "sig=A")
    assert (await put(kit, forged, data)).status_code == 403
    # oversize: no slot above media_max_size
    big = await slot(kit, alice, 200 * KiB + 1)
    assert big.status_code == 413 and big.json()["code"] == "payload_too_large", big.text


async def test_quota_and_oversize_fail_the_message_with_the_reason(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(
        env={
            "TIDINGS_MEDIA_STORE": "local",
            "TIDINGS_MEDIA_MAX_SIZE": str(400 * KiB),
            "TIDINGS_MEDIA_QUOTA_BYTES": str(600 * KiB),
        }
    )
    async with clients(server.url, tmp_path, "alice", "bob") as (alice, _bob):
        conv = await alice.open_direct("bob")
        too_big = await alice.send_file(conv.id, document(tmp_path / "big.pdf", "b", 500 * KiB))
        first = await alice.send_file(conv.id, document(tmp_path / "one.pdf", "1", 350 * KiB))
        await alice.wait_upload(first.id)
        over = await alice.send_file(conv.id, document(tmp_path / "two.pdf", "2", 350 * KiB))
        for message_id, reason in ((too_big.id, "payload_too_large"), (over.id, "quota_exceeded")):

            async def failed(message_id: Any = message_id) -> Any:
                m = await alice.message(message_id)
                return m if m is not None and m.status is MessageStatus.FAILED else None

            got = await wait_for(failed, 30, f"{reason} to fail the message")
            assert got.fail_reason == reason
            assert got.attachments[0].state == "failed"
        sent = await alice.message(first.id)
        assert sent is not None and sent.status is not MessageStatus.FAILED


async def test_gc_deletes_an_abandoned_upload(
    kit_for: Callable[[dict[str, str]], ServerKit],
) -> None:
    kit = kit_for(
        {"TIDINGS_MEDIA_ABANDONED_HOURS": "0.0005", "TIDINGS_MEDIA_GC_INTERVAL_SECONDS": "1"}
    )
    alice = await kit.account("alice")
    data = b"\x07" * 100_000
    abandoned = await new_slot(kit, alice, len(data))
    first = abandoned["parts"][0]
    assert (await put(kit, first["url"], data[: first["length"]])).status_code < 300
    usage = await kit.http.get("/v1/media", headers=alice.headers)
    assert usage.json()["used"] >= len(data)
    blob_id = abandoned["blob_id"]
    root = kit.server.data_dir / "media"
    assert any(blob_id in p.name for p in root.rglob("*"))

    async def collected() -> bool:
        status = await kit.http.get(f"/v1/media/uploads/{blob_id}", headers=alice.headers)
        return status.status_code == 404

    await wait_for(collected, 20, "the GC to delete the abandoned upload")

    # The GC gives the bytes back right after deleting the upload, in a step of its own: on
    # PostgreSQL on a busy machine the upload was seen gone before that step had run.
    async def released() -> bool:
        usage = await kit.http.get("/v1/media", headers=alice.headers)
        used: int = usage.json()["used"]
        return used == 0

    await wait_for(released, 10, "the quota to be released")
    assert not any(blob_id in p.name for p in root.rglob("*")), "its files are gone"


def _trickle(port: int, head: bytes, body: bytes, seconds: float) -> bytes:
    """Send ``head`` at once, then ``body`` in steady pieces over ``seconds``; the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        pieces = 12
        step = -(-len(body) // pieces)
        try:
            for i in range(0, len(body), step):
                time.sleep(seconds / pieces)
                sock.sendall(body[i : i + step])
        except OSError:
            pass  # cut by the server: read what it said
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except OSError:
            pass
        return b"".join(chunks)


async def test_a_slow_steady_part_outlives_body_timeout(
    kit_for: Callable[[dict[str, str]], ServerKit],
) -> None:
    kit = kit_for({"TIDINGS_BODY_TIMEOUT": "1", "TIDINGS_BLOB_BODY_TIMEOUT": "30"})
    alice = await kit.account("alice")
    data = bytes(range(256)) * 256  # 64 KiB, one part
    made = await new_slot(kit, alice, len(data))
    (part,) = made["parts"]
    port = kit.server.port
    head = (
        f"PUT {part['url']} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
        "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = await asyncio.to_thread(_trickle, port, head, data, 3.0)
    assert time.monotonic() - started > 2.5
    assert answer.split(b"\r\n", 1)[0].split()[1][:1] == b"2", answer[:200]
    finished = await kit.http.post(
        f"/v1/media/uploads/{made['blob_id']}/complete", headers=alice.headers
    )
    assert finished.status_code == 200, finished.text
    # the same pace on a JSON route is cut at body_timeout
    body = b'{"size": 1000, "kind": "file"}' + b" " * 200
    head = (
        f"POST /v1/media/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {alice.token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = await asyncio.to_thread(_trickle, port, head, body, 3.0)
    assert not answer.startswith(b"HTTP/1.1 201"), answer[:200]
