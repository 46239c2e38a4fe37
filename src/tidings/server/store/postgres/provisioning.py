"""Device linking (provisioning requests) and the to-device queues: messages from one device
straight to others, outside any conversation (docs/e2ee.md)."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from tidings.protocol import DeviceEnvelope, ErrorCode
from tidings.server.domain import DeviceQueued, LinkedDevice, NewDeviceLink, Refused
from tidings.server.domain.devices import plan_device_send
from tidings.server.domain.provisioning import check_approval, check_fetch
from tidings.server.store.postgres.accounts import drop_device
from tidings.server.store.postgres.database import Connection, Database, Retry
from tidings.server.store.postgres.envelopes import strings_decoder

_DEVICE_ENVELOPE_COLUMNS = "dseq, id, sender, sender_device, ts, payload"


class Provisioning(Database):
    async def create_provisioning(
        self, provisioning_id: str, secret_hash: bytes, ephemeral_key: bytes, now: int, ttl: int
    ) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO provisioning (id, secret_hash, ephemeral_key, created_at, expires_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                provisioning_id,
                secret_hash,
                ephemeral_key,
                now,
                now + ttl,
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

        async def tx(conn: Connection) -> tuple[str, int]:
            for found_id, found_hash, expires_at, found_key in await conn.fetch(
                "SELECT id, secret_hash, expires_at, token_key FROM provisioning"
                " WHERE ephemeral_key = $1",
                ephemeral_key,
            ):
                if (
                    expires_at > now
                    and found_key == token_key
                    and hmac.compare_digest(bytes(found_hash), secret_hash)
                ):
                    return str(found_id), int(expires_at)  # a retry: its answer was lost
            if await conn.fetchval(
                "SELECT 1 FROM devices WHERE token_key = $1 UNION ALL"
                " SELECT 1 FROM provisioning WHERE token_key = $1",
                token_key,
            ):
                raise Refused(ErrorCode.CONFLICT, "choose another token")
            await conn.execute(
                "INSERT INTO provisioning (id, secret_hash, ephemeral_key, created_at,"
                " expires_at, token_key, token_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                provisioning_id,
                secret_hash,
                ephemeral_key,
                now,
                now + ttl,
                token_key,
                token_hash,
            )
            return provisioning_id, now + ttl

        return await self._write(tx)

    async def approve_provisioning(self, link: NewDeviceLink) -> int:
        return await self._write(lambda conn: _approve(conn, link))

    async def fetch_provisioning(
        self, provisioning_id: str, secret_hash: bytes, token_key: str, token_hash: bytes, now: int
    ) -> LinkedDevice:
        async def tx(conn: Connection) -> LinkedDevice:
            # The row is locked on its own, and the username read after: a locked row that an
            # approval changed while this waited is read again at its new version, but a joined
            # account would still be the one seen before the approval (none).
            row = await conn.fetchrow(
                "SELECT secret_hash, expires_at, account_id, device_id, sealed, token_key"
                " FROM provisioning WHERE id = $1 FOR UPDATE",
                provisioning_id,
            )
            if row is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such provisioning request")
            stored_hash, expires_at, account_id, device_id, sealed, own_key = row
            check_fetch(
                stored_hash=stored_hash,
                given_hash=secret_hash,
                expires_at=expires_at,
                approved=account_id is not None,
                now=now,
            )
            username = await conn.fetchval(
                "SELECT username FROM accounts WHERE id = $1", account_id
            )
            if own_key is not None:
                # The new device chose its token and the approval gave the device that one:
                # the result stays until it expires, so a lost answer can be fetched again.
                await conn.execute(
                    "UPDATE provisioning SET fetched = 1 WHERE id = $1", provisioning_id
                )
                return LinkedDevice(account_id, username, device_id, sealed, token_made=False)
            await conn.execute(
                "UPDATE devices SET token_key = $1, token_hash = $2 WHERE account_id = $3"
                " AND device_id = $4",
                token_key,
                token_hash,
                account_id,
                device_id,
            )
            await conn.execute("DELETE FROM provisioning WHERE id = $1", provisioning_id)
            return LinkedDevice(account_id, username, device_id, sealed)

        return await self._write(tx)

    async def purge_provisioning(self, now: int) -> int:
        async def tx(conn: Connection) -> int:
            expired = await conn.fetch(
                "DELETE FROM provisioning WHERE expires_at <= $1"
                " RETURNING account_id, device_id, fetched",
                now,
            )
            for account_id, device_id, fetched in expired:
                if account_id is not None and not fetched:
                    await drop_device(conn, account_id, device_id)
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
        async def q(conn: Connection) -> list[DeviceEnvelope]:
            rows = await conn.fetch(
                f"SELECT {_DEVICE_ENVELOPE_COLUMNS} FROM device_queue"  # noqa: S608  # constant column list
                " WHERE account_id = $1 AND device_id = $2 AND dseq > $3 ORDER BY dseq LIMIT $4",
                account_id,
                device_id,
                after,
                limit,
            )
            return [_device_envelope(row) for row in rows]

        return await self._read(q)

    async def ack_device_queue(self, account_id: str, device_id: int, upto: int) -> int:
        async def tx(conn: Connection) -> int:
            status = await conn.execute(
                "DELETE FROM device_queue WHERE account_id = $1 AND device_id = $2 AND dseq <= $3",
                account_id,
                device_id,
                upto,
            )
            return int(status.rsplit(" ", 1)[-1])

        return await self._write(tx)


# Functions below run inside a transaction of the caller.


async def _approve(conn: Connection, link: NewDeviceLink) -> int:
    row = await conn.fetchrow(
        "SELECT ephemeral_key, expires_at, account_id, device_id, sealed, token_key, token_hash"
        " FROM provisioning WHERE id = $1 FOR UPDATE",
        link.provisioning_id,
    )
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
    # Device ids are max + 1: a concurrent approval for the account fails on the primary key
    # and runs again with the next id.
    count, highest = await conn.fetchrow(
        "SELECT count(*), coalesce(max(device_id), 0) FROM devices WHERE account_id = $1",
        link.account_id,
    ) or (0, 0)
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
    await conn.execute(
        "INSERT INTO devices (account_id, device_id, name, token_key, token_hash, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        link.account_id,
        device_id,
        link.device_name,
        link.placeholder_key if token_key is None else token_key,
        link.placeholder_hash if token_hash is None else token_hash,
        link.now,
    )
    await conn.execute(
        "UPDATE provisioning SET account_id = $1, device_id = $2, sealed = $3 WHERE id = $4",
        link.account_id,
        device_id,
        link.sealed,
        link.provisioning_id,
    )
    return device_id


def _device_envelope(row: Iterable[Any]) -> DeviceEnvelope:  # records are untyped
    dseq, raw_id, sender, sender_device, ts, payload = row
    return DeviceEnvelope(
        dseq=dseq,
        id=uuid.UUID(bytes=raw_id),
        sender=sender,
        sender_device=sender_device,
        ts=ts,
        payload=payload,
    )


async def _queue_to_devices(
    conn: Connection,
    sender: tuple[str, int],
    msg_id: uuid.UUID,
    messages: Sequence[tuple[str, tuple[str, int], bytes]],
    now: int,
) -> DeviceQueued:
    sender_account, sender_device = sender
    done = await conn.fetchrow(
        "SELECT unknown FROM device_sends WHERE sender = $1 AND sender_device = $2 AND id = $3",
        sender_account,
        sender_device,
        msg_id.bytes,
    )
    if done is not None:
        unknown = tuple(strings_decoder.decode(done[0])) if done[0] else ()
        return DeviceQueued((), unknown, duplicate=True)
    targets = sorted({account for _, (account, _), _ in messages} - {sender_account})
    contacts = {
        row[0]
        for row in await conn.fetch(
            "SELECT DISTINCT o.account_id FROM members me JOIN members o"
            " ON o.conv_id = me.conv_id WHERE me.account_id = $1 AND o.account_id = ANY($2)",
            sender_account,
            targets,
        )
    }
    reachable = {
        target for _, target, _ in messages if target[0] == sender_account or target[0] in contacts
    }
    keyed = {
        (row[0], row[1])
        for row in await conn.fetch(
            "SELECT account_id, device_id FROM device_keys WHERE (account_id, device_id) IN"
            " (SELECT * FROM unnest($1::text[], $2::int[]))",
            [a for a, _ in reachable],
            [d for _, d in reachable],
        )
    }
    plan = plan_device_send(sender, messages, contacts, keyed)
    # The idempotency record first: a concurrent copy of this DeviceSend waits on it here,
    # and runs again once this one committed (then it finds the record above).
    refused = list(plan.unknown)
    if (
        await conn.fetchval(
            "INSERT INTO device_sends (sender, sender_device, id, ts, unknown)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
            sender_account,
            sender_device,
            msg_id.bytes,
            now,
            msgspec.json.encode(refused).decode() if refused else None,
        )
        is None
    ):
        raise Retry("the same DeviceSend was queued concurrently")
    queued: list[tuple[tuple[str, int], DeviceEnvelope]] = []
    for (account, device), payload in plan.deliver:
        dseq = await conn.fetchval(
            "UPDATE devices SET last_dseq = last_dseq + 1 WHERE account_id = $1 AND device_id = $2"
            " RETURNING last_dseq",
            account,
            device,
        )
        envelope = DeviceEnvelope(
            dseq=dseq,
            id=msg_id,
            sender=sender_account,
            sender_device=sender_device,
            ts=now,
            payload=payload,
        )
        await conn.execute(
            f"INSERT INTO device_queue (account_id, device_id, {_DEVICE_ENVELOPE_COLUMNS})"  # noqa: S608  # constant column list
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            account,
            device,
            dseq,
            msg_id.bytes,
            sender_account,
            sender_device,
            now,
            payload,
        )
        queued.append(((account, device), envelope))
    return DeviceQueued(tuple(queued), plan.unknown, duplicate=False)
