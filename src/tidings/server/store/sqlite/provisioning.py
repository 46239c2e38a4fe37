"""Device linking (provisioning requests) and the to-device queues: messages from one device
straight to others, outside any conversation (docs/e2ee.md)."""

from __future__ import annotations

import hmac
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from tidings.protocol import DeviceEnvelope, ErrorCode
from tidings.server.domain import DeviceQueued, LinkedDevice, NewDeviceLink, Refused
from tidings.server.domain.devices import plan_device_send
from tidings.server.domain.provisioning import check_approval, check_fetch
from tidings.server.store.sqlite.accounts import drop_device
from tidings.server.store.sqlite.envelopes import strings_decoder
from tidings.server.store.sqlite.writer import Database

_DEVICE_ENVELOPE_COLUMNS = "dseq, id, sender, sender_device, ts, payload"


class Provisioning(Database):
    async def create_provisioning(
        self, provisioning_id: str, secret_hash: bytes, ephemeral_key: bytes, now: int, ttl: int
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO provisioning (id, secret_hash, ephemeral_key, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (provisioning_id, secret_hash, ephemeral_key, now, now + ttl),
            )

        await self._write(tx)

    async def create_provisioning_once(
        self,
        provisioning_id: str,
        secret_hash: bytes,
        ephemeral_key: bytes,
        token: tuple[str, bytes],
        now: int,
        ttl: int,
    ) -> tuple[str, int]:
        token_key, token_hash = token

        def tx(conn: sqlite3.Connection) -> tuple[str, int]:
            for found_id, found_hash, expires_at, found_key in conn.execute(
                "SELECT id, secret_hash, expires_at, token_key FROM provisioning"
                " WHERE ephemeral_key = ?",
                (ephemeral_key,),
            ):
                if (
                    expires_at > now
                    and found_key == token_key
                    and hmac.compare_digest(bytes(found_hash), secret_hash)
                ):
                    return str(found_id), int(expires_at)  # a retry: its answer was lost
            if conn.execute(
                "SELECT 1 FROM devices WHERE token_key = ? UNION ALL"
                " SELECT 1 FROM provisioning WHERE token_key = ?",
                (token_key, token_key),
            ).fetchone():
                raise Refused(ErrorCode.CONFLICT, "choose another token")
            conn.execute(
                "INSERT INTO provisioning (id, secret_hash, ephemeral_key, created_at,"
                " expires_at, token_key, token_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    provisioning_id,
                    secret_hash,
                    ephemeral_key,
                    now,
                    now + ttl,
                    token_key,
                    token_hash,
                ),
            )
            return provisioning_id, now + ttl

        return await self._write(tx)

    async def approve_provisioning(self, link: NewDeviceLink) -> int:
        return await self._write(lambda conn: _approve(conn, link))

    async def fetch_provisioning(
        self, provisioning_id: str, secret_hash: bytes, token_key: str, token_hash: bytes, now: int
    ) -> LinkedDevice:
        def tx(conn: sqlite3.Connection) -> LinkedDevice:
            row = conn.execute(
                "SELECT p.secret_hash, p.expires_at, p.account_id, p.device_id, p.sealed,"
                " a.username, p.token_key FROM provisioning p"
                " LEFT JOIN accounts a ON a.id = p.account_id WHERE p.id = ?",
                (provisioning_id,),
            ).fetchone()
            if row is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such provisioning request")
            stored_hash, expires_at, account_id, device_id, sealed, username, own_key = row
            check_fetch(
                stored_hash=stored_hash,
                given_hash=secret_hash,
                expires_at=expires_at,
                approved=account_id is not None,
                now=now,
            )
            if own_key is not None:
                # The new device chose its token, and the approval gave the device that one:
                # the result stays until it expires, so a fetch whose answer was lost can be
                # repeated (no token goes over the wire here).
                conn.execute("UPDATE provisioning SET fetched = 1 WHERE id = ?", (provisioning_id,))
                return LinkedDevice(account_id, username, device_id, sealed, token_made=False)
            conn.execute(
                "UPDATE devices SET token_key = ?, token_hash = ? WHERE account_id = ?"
                " AND device_id = ?",
                (token_key, token_hash, account_id, device_id),
            )
            conn.execute("DELETE FROM provisioning WHERE id = ?", (provisioning_id,))
            return LinkedDevice(account_id, username, device_id, sealed)

        return await self._write(tx)

    async def purge_provisioning(self, now: int) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            expired = conn.execute(
                "DELETE FROM provisioning WHERE expires_at <= ?"
                " RETURNING account_id, device_id, fetched",
                (now,),
            ).fetchall()
            for account_id, device_id, fetched in expired:
                if account_id is not None and not fetched:
                    drop_device(conn, account_id, device_id)
            return len(expired)

        return await self._write(tx)

    # ------------------------------------------------------------------ to-device queues

    async def queue_to_devices(
        self,
        sender: tuple[str, int],
        msg_id: uuid.UUID,
        messages: Sequence[tuple[str, tuple[str, int], bytes]],
        now: int,
    ) -> DeviceQueued:
        return await self._write(
            lambda conn: _queue_to_devices(conn, sender, msg_id, messages, now)
        )

    async def device_queue(
        self, account_id: str, device_id: int, after: int, limit: int
    ) -> list[DeviceEnvelope]:
        def q(conn: sqlite3.Connection) -> list[DeviceEnvelope]:
            rows = conn.execute(
                f"SELECT {_DEVICE_ENVELOPE_COLUMNS} FROM device_queue"  # noqa: S608  # constant column list
                " WHERE account_id = ? AND device_id = ? AND dseq > ? ORDER BY dseq LIMIT ?",
                (account_id, device_id, after, limit),
            )
            return [_device_envelope(row) for row in rows]

        return await self._read(q)

    async def ack_device_queue(self, account_id: str, device_id: int, upto: int) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM device_queue WHERE account_id = ? AND device_id = ? AND dseq <= ?",
                (account_id, device_id, upto),
            ).rowcount

        return await self._write(tx)


# Functions below run on the writer thread (or a reader) inside a transaction.


def _approve(conn: sqlite3.Connection, link: NewDeviceLink) -> int:
    row = conn.execute(
        "SELECT ephemeral_key, expires_at, account_id, device_id, sealed, token_key, token_hash"
        " FROM provisioning WHERE id = ?",
        (link.provisioning_id,),
    ).fetchone()
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such provisioning request")
    ephemeral_key, expires_at, approved_for, approved_id, sealed, token_key, token_hash = row
    if (
        approved_for == link.account_id
        and expires_at > link.now
        and hmac.compare_digest(bytes(ephemeral_key), link.ephemeral_key)
        and bytes(sealed) == link.sealed
    ):
        return int(approved_id)  # the same approval again: its answer was lost
    count, highest = conn.execute(
        "SELECT count(*), coalesce(max(device_id), 0) FROM devices WHERE account_id = ?",
        (link.account_id,),
    ).fetchone()
    check_approval(
        stored_key=ephemeral_key,
        expires_at=expires_at,
        approved=approved_for is not None,
        given_key=link.ephemeral_key,
        devices=count,
        max_devices=link.max_devices,
        now=link.now,
    )
    device_id = int(highest) + 1
    conn.execute(
        "INSERT INTO devices (account_id, device_id, name, token_key, token_hash, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            link.account_id,
            device_id,
            link.device_name,
            link.placeholder_key if token_key is None else token_key,
            link.placeholder_hash if token_hash is None else token_hash,
            link.now,
        ),
    )
    conn.execute(
        "UPDATE provisioning SET account_id = ?, device_id = ?, sealed = ? WHERE id = ?",
        (link.account_id, device_id, link.sealed, link.provisioning_id),
    )
    return device_id


def _device_envelope(row: tuple[Any, ...]) -> DeviceEnvelope:  # sqlite3 rows are untyped
    dseq, raw_id, sender, sender_device, ts, payload = row
    return DeviceEnvelope(
        dseq=dseq,
        id=uuid.UUID(bytes=raw_id),
        sender=sender,
        sender_device=sender_device,
        ts=ts,
        payload=payload,
    )


def _contacts(conn: sqlite3.Connection, sender: str, accounts: set[str]) -> set[str]:
    """The ``accounts`` that share at least one conversation with ``sender``."""
    return {
        account
        for account in accounts
        if account != sender
        and conn.execute(
            "SELECT 1 FROM members me JOIN members o ON o.conv_id = me.conv_id"
            " WHERE me.account_id = ? AND o.account_id = ? LIMIT 1",
            (sender, account),
        ).fetchone()
    }


def _keyed(conn: sqlite3.Connection, devices: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """The ``devices`` that have uploaded keys."""
    return {
        device
        for device in devices
        if conn.execute(
            "SELECT 1 FROM device_keys WHERE account_id = ? AND device_id = ?", device
        ).fetchone()
    }


def _queue_to_devices(
    conn: sqlite3.Connection,
    sender: tuple[str, int],
    msg_id: uuid.UUID,
    messages: Sequence[tuple[str, tuple[str, int], bytes]],
    now: int,
) -> DeviceQueued:
    sender_account, sender_device = sender
    done = conn.execute(
        "SELECT unknown FROM device_sends WHERE sender = ? AND sender_device = ? AND id = ?",
        (sender_account, sender_device, msg_id.bytes),
    ).fetchone()
    if done is not None:
        unknown = tuple(strings_decoder.decode(done[0])) if done[0] else ()
        return DeviceQueued((), unknown, duplicate=True)
    contacts = _contacts(conn, sender_account, {account for _, (account, _), _ in messages})
    reachable = {
        target for _, target, _ in messages if target[0] == sender_account or target[0] in contacts
    }
    plan = plan_device_send(sender, messages, contacts, _keyed(conn, reachable))
    queued: list[tuple[tuple[str, int], DeviceEnvelope]] = []
    for (account, device), payload in plan.deliver:
        (dseq,) = conn.execute(
            "UPDATE devices SET last_dseq = last_dseq + 1 WHERE account_id = ? AND device_id = ?"
            " RETURNING last_dseq",
            (account, device),
        ).fetchone()
        envelope = DeviceEnvelope(
            dseq=dseq,
            id=msg_id,
            sender=sender_account,
            sender_device=sender_device,
            ts=now,
            payload=payload,
        )
        conn.execute(
            f"INSERT INTO device_queue (account_id, device_id, {_DEVICE_ENVELOPE_COLUMNS})"  # noqa: S608  # constant column list
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (account, device, dseq, msg_id.bytes, sender_account, sender_device, now, payload),
        )
        queued.append(((account, device), envelope))
    refused = list(plan.unknown)
    conn.execute(
        "INSERT INTO device_sends (sender, sender_device, id, ts, unknown) VALUES (?, ?, ?, ?, ?)",
        (
            sender_account,
            sender_device,
            msg_id.bytes,
            now,
            msgspec.json.encode(refused).decode() if refused else None,
        ),
    )
    return DeviceQueued(tuple(queued), plan.unknown, duplicate=False)
