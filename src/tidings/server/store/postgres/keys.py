"""The key directory: identity keys, the devices' prekeys and one-time key claims
(docs/e2ee.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tidings.protocol import ErrorCode
from tidings.protocol.keys import (
    MAX_STORED_PREKEYS,
    DeviceBundle,
    KeyCounts,
    KeyUpload,
    KyberPreKey,
    OneTimePreKey,
    PreKeyBundles,
    SignedPreKey,
)
from tidings.server.domain import Refused
from tidings.server.domain.keys import (
    IdentityChange,
    first_upload_keys,
    identity_change,
    replaced_devices,
)
from tidings.server.store.postgres.accounts import drop_device
from tidings.server.store.postgres.database import Connection, Database

#: one_time_keys.kind
_CURVE, _KYBER = 0, 1


class Keys(Database):
    async def upload_keys(
        self,
        account_id: str,
        device_id: int,
        upload: KeyUpload,
        now: int,
        *,
        dropped: list[int] | None = None,
    ) -> KeyCounts:
        async def tx(conn: Connection) -> tuple[list[int], KeyCounts]:
            removed = await _upload_keys(conn, account_id, device_id, upload, now)
            return removed, await key_counts_of(conn, account_id, device_id)

        removed, counts = await self._write(tx)  # may run more than once: extend after it
        if dropped is not None:
            dropped.extend(removed)
        return counts

    async def key_counts(self, account_id: str, device_id: int) -> KeyCounts:
        return await self._read(lambda conn: key_counts_of(conn, account_id, device_id))

    async def claim_keys(
        self, requester: tuple[str, int], wanted: Mapping[str, Sequence[int]]
    ) -> list[PreKeyBundles]:
        items = [(account, list(devices)) for account, devices in wanted.items()]

        async def tx(conn: Connection) -> list[PreKeyBundles]:
            bundles = [
                await _claim(conn, requester, account, devices) for account, devices in items
            ]
            return [b for b in bundles if b is not None]

        return await self._write(tx)


# Functions below run inside a transaction of the caller.


async def _upload_keys(
    conn: Connection, account_id: str, device_id: int, upload: KeyUpload, now: int
) -> list[int]:
    """Store the upload; returns the ids of the other devices a new identity removed. The
    account's row stays locked: uploads of its devices take turns."""
    row = await conn.fetchrow(
        "SELECT identity_key FROM accounts WHERE id = $1 FOR UPDATE", account_id
    )
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such account")
    change = identity_change(row[0], upload)
    removed: list[int] = []
    if change is IdentityChange.REPLACE:
        devices = await conn.fetch(
            "SELECT device_id FROM devices WHERE account_id = $1", account_id
        )
        removed = replaced_devices((d[0] for d in devices), device_id)
        for other in removed:
            await drop_device(conn, account_id, other)
        await conn.execute("DELETE FROM one_time_keys WHERE account_id = $1", account_id)
        await conn.execute("DELETE FROM device_keys WHERE account_id = $1", account_id)
    if change is not IdentityChange.KEEP:
        await conn.execute(
            "UPDATE accounts SET identity_key = $1 WHERE id = $2", upload.identity_key, account_id
        )
    key = (account_id, device_id)
    signed, kyber = upload.signed_prekey, upload.kyber_last_resort
    if await conn.fetchval(
        "SELECT 1 FROM device_keys WHERE account_id = $1 AND device_id = $2", *key
    ):
        await conn.execute(
            "UPDATE device_keys SET registration_id = $3 WHERE account_id = $1 AND device_id = $2",
            *key,
            upload.registration_id,
        )
        if signed is not None:
            await conn.execute(
                "UPDATE device_keys SET signed_prekey_id = $3, signed_prekey = $4,"
                " signed_prekey_sig = $5, signed_prekey_at = $6 WHERE account_id = $1"
                " AND device_id = $2",
                *key,
                signed.id,
                signed.key,
                signed.signature,
                now,
            )
        if kyber is not None:
            await conn.execute(
                "UPDATE device_keys SET kyber_id = $3, kyber_key = $4, kyber_sig = $5"
                " WHERE account_id = $1 AND device_id = $2",
                *key,
                kyber.id,
                kyber.key,
                kyber.signature,
            )
    else:
        signed, kyber = first_upload_keys(upload)
        await conn.execute(
            "INSERT INTO device_keys (account_id, device_id, registration_id, signed_prekey_id,"
            " signed_prekey, signed_prekey_sig, signed_prekey_at, kyber_id, kyber_key, kyber_sig)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            *key,
            upload.registration_id,
            signed.id,
            signed.key,
            signed.signature,
            now,
            kyber.id,
            kyber.key,
            kyber.signature,
        )
    rows: list[tuple[str, int, int, int, bytes, bytes | None]]
    rows = [(*key, _CURVE, p.id, p.key, None) for p in upload.prekeys]
    rows += [(*key, _KYBER, p.id, p.key, p.signature) for p in upload.kyber_prekeys]
    if rows:
        await conn.executemany(
            "INSERT INTO one_time_keys (account_id, device_id, kind, key_id, key, signature)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, device_id, kind, key_id)"
            " DO UPDATE SET key = excluded.key, signature = excluded.signature",
            rows,
        )
        # Keep the newest MAX_STORED_PREKEYS of each kind.
        await conn.execute(
            "DELETE FROM one_time_keys WHERE pos IN (SELECT pos FROM (SELECT pos, row_number()"
            " OVER (PARTITION BY kind ORDER BY pos DESC) AS n FROM one_time_keys"
            " WHERE account_id = $1 AND device_id = $2) ranked WHERE n > $3)",
            *key,
            MAX_STORED_PREKEYS,
        )
    return removed


async def key_counts_of(conn: Connection, account_id: str, device_id: int) -> KeyCounts:
    counts = {
        row[0]: row[1]
        for row in await conn.fetch(
            "SELECT kind, count(*) FROM one_time_keys WHERE account_id = $1 AND device_id = $2"
            " GROUP BY kind",
            account_id,
            device_id,
        )
    }
    row = await conn.fetchrow(
        "SELECT signed_prekey_id, signed_prekey_at FROM device_keys WHERE account_id = $1"
        " AND device_id = $2",
        account_id,
        device_id,
    )
    signed_id, signed_at = (row[0], row[1]) if row is not None else (None, None)
    return KeyCounts(
        prekeys=counts.get(_CURVE, 0),
        kyber_prekeys=counts.get(_KYBER, 0),
        signed_prekey_id=signed_id,
        signed_prekey_uploaded_at=signed_at,
    )


async def _take_one_time_key(
    conn: Connection, account_id: str, device_id: int, kind: int
) -> tuple[int, bytes, bytes | None] | None:
    """Delete and return the device's oldest one-time key of ``kind`` that no concurrent claim
    holds (SKIP LOCKED): each key goes to one claimer, and claimers do not wait in line."""
    row = await conn.fetchrow(
        "DELETE FROM one_time_keys WHERE pos = (SELECT pos FROM one_time_keys"
        " WHERE account_id = $1 AND device_id = $2 AND kind = $3 ORDER BY pos LIMIT 1"
        " FOR UPDATE SKIP LOCKED) RETURNING key_id, key, signature",
        account_id,
        device_id,
        kind,
    )
    return (row[0], row[1], row[2]) if row is not None else None


async def _claim(
    conn: Connection,
    requester: tuple[str, int],
    account_id: str,
    devices: Sequence[int],
) -> PreKeyBundles | None:
    identity = await conn.fetchval("SELECT identity_key FROM accounts WHERE id = $1", account_id)
    if identity is None:
        return None
    wanted = set(devices)
    bundles: list[DeviceBundle] = []
    for (
        device_id,
        registration_id,
        signed_id,
        signed_key,
        signed_sig,
        kyber_id,
        kyber_key,
        kyber_sig,
    ) in await conn.fetch(
        "SELECT device_id, registration_id, signed_prekey_id, signed_prekey, signed_prekey_sig,"
        " kyber_id, kyber_key, kyber_sig FROM device_keys WHERE account_id = $1"
        " ORDER BY device_id",
        account_id,
    ):
        if (wanted and device_id not in wanted) or (account_id, device_id) == requester:
            continue
        curve = await _take_one_time_key(conn, account_id, device_id, _CURVE)
        one_time_kyber = await _take_one_time_key(conn, account_id, device_id, _KYBER)
        if one_time_kyber is not None and one_time_kyber[2] is not None:
            kyber = KyberPreKey(one_time_kyber[0], one_time_kyber[1], one_time_kyber[2])
        else:
            kyber = KyberPreKey(kyber_id, kyber_key, kyber_sig)
        bundles.append(
            DeviceBundle(
                device_id=device_id,
                registration_id=registration_id,
                signed_prekey=SignedPreKey(signed_id, signed_key, signed_sig),
                kyber_prekey=kyber,
                prekey=OneTimePreKey(curve[0], curve[1]) if curve is not None else None,
                kyber_is_last_resort=one_time_kyber is None,
            )
        )
    if not bundles:
        return None
    return PreKeyBundles(account_id=account_id, identity_key=identity, devices=bundles)
