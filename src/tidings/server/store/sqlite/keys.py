"""The key directory: identity keys, the devices' prekeys and one-time key claims
(docs/e2ee.md)."""

from __future__ import annotations

import sqlite3
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
from tidings.server.store.sqlite.accounts import drop_device
from tidings.server.store.sqlite.writer import Database

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
        def tx(conn: sqlite3.Connection) -> KeyCounts:
            removed = _upload_keys(conn, account_id, device_id, upload, now)
            if dropped is not None:
                dropped.extend(removed)
            return key_counts_of(conn, account_id, device_id)

        return await self._write(tx)

    async def key_counts(self, account_id: str, device_id: int) -> KeyCounts:
        return await self._read(lambda conn: key_counts_of(conn, account_id, device_id))

    async def claim_keys(
        self, requester: tuple[str, int], wanted: Mapping[str, Sequence[int]]
    ) -> list[PreKeyBundles]:
        items = [(account, list(devices)) for account, devices in wanted.items()]

        def tx(conn: sqlite3.Connection) -> list[PreKeyBundles]:
            bundles = (_claim(conn, requester, account, devices) for account, devices in items)
            return [b for b in bundles if b is not None]

        return await self._write(tx)


# Functions below run on the writer thread (or a reader) inside a transaction.


def _upload_keys(
    conn: sqlite3.Connection, account_id: str, device_id: int, upload: KeyUpload, now: int
) -> list[int]:
    """Store the upload; returns the ids of the other devices a new identity removed."""
    row = conn.execute("SELECT identity_key FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such account")
    change = identity_change(row[0], upload)
    removed: list[int] = []
    if change is IdentityChange.REPLACE:
        devices = conn.execute("SELECT device_id FROM devices WHERE account_id = ?", (account_id,))
        removed = replaced_devices((d for (d,) in devices.fetchall()), device_id)
        for other in removed:
            drop_device(conn, account_id, other)
        conn.execute("DELETE FROM one_time_keys WHERE account_id = ?", (account_id,))
        conn.execute("DELETE FROM device_keys WHERE account_id = ?", (account_id,))
    if change is not IdentityChange.KEEP:
        conn.execute(
            "UPDATE accounts SET identity_key = ? WHERE id = ?", (upload.identity_key, account_id)
        )
    key = (account_id, device_id)
    signed, kyber = upload.signed_prekey, upload.kyber_last_resort
    if conn.execute(
        "SELECT 1 FROM device_keys WHERE account_id = ? AND device_id = ?", key
    ).fetchone():
        conn.execute(
            "UPDATE device_keys SET registration_id = ? WHERE account_id = ? AND device_id = ?",
            (upload.registration_id, *key),
        )
        if signed is not None:
            conn.execute(
                "UPDATE device_keys SET signed_prekey_id = ?, signed_prekey = ?,"
                " signed_prekey_sig = ?, signed_prekey_at = ? WHERE account_id = ?"
                " AND device_id = ?",
                (signed.id, signed.key, signed.signature, now, *key),
            )
        if kyber is not None:
            conn.execute(
                "UPDATE device_keys SET kyber_id = ?, kyber_key = ?, kyber_sig = ?"
                " WHERE account_id = ? AND device_id = ?",
                (kyber.id, kyber.key, kyber.signature, *key),
            )
    else:
        signed, kyber = first_upload_keys(upload)
        conn.execute(
            "INSERT INTO device_keys (account_id, device_id, registration_id, signed_prekey_id,"
            " signed_prekey, signed_prekey_sig, signed_prekey_at, kyber_id, kyber_key, kyber_sig)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *key,
                upload.registration_id,
                signed.id,
                signed.key,
                signed.signature,
                now,
                kyber.id,
                kyber.key,
                kyber.signature,
            ),
        )
    rows: list[tuple[str, int, int, int, bytes, bytes | None]]
    rows = [(*key, _CURVE, p.id, p.key, None) for p in upload.prekeys]
    rows += [(*key, _KYBER, p.id, p.key, p.signature) for p in upload.kyber_prekeys]
    if rows:
        conn.executemany(
            "INSERT INTO one_time_keys (account_id, device_id, kind, key_id, key, signature)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, device_id, kind, key_id)"
            " DO UPDATE SET key = excluded.key, signature = excluded.signature",
            rows,
        )
        # Keep the newest MAX_STORED_PREKEYS of each kind.
        for kind in (_CURVE, _KYBER):
            conn.execute(
                "DELETE FROM one_time_keys WHERE rowid IN (SELECT rowid FROM one_time_keys"
                " WHERE account_id = ? AND device_id = ? AND kind = ? ORDER BY rowid DESC"
                " LIMIT -1 OFFSET ?)",
                (*key, kind, MAX_STORED_PREKEYS),
            )
    return removed


def key_counts_of(conn: sqlite3.Connection, account_id: str, device_id: int) -> KeyCounts:
    key = (account_id, device_id)
    counts = dict(
        conn.execute(
            "SELECT kind, count(*) FROM one_time_keys WHERE account_id = ? AND device_id = ?"
            " GROUP BY kind",
            key,
        ).fetchall()
    )
    row = conn.execute(
        "SELECT signed_prekey_id, signed_prekey_at FROM device_keys WHERE account_id = ?"
        " AND device_id = ?",
        key,
    ).fetchone()
    signed_id, signed_at = row if row is not None else (None, None)
    return KeyCounts(
        prekeys=counts.get(_CURVE, 0),
        kyber_prekeys=counts.get(_KYBER, 0),
        signed_prekey_id=signed_id,
        signed_prekey_uploaded_at=signed_at,
    )


def _take_one_time_key(
    conn: sqlite3.Connection, account_id: str, device_id: int, kind: int
) -> tuple[int, bytes, bytes | None] | None:
    """Delete and return the device's oldest one-time key of ``kind`` (one statement, inside
    the writer's transaction: no other claim can see it afterwards)."""
    rows = conn.execute(
        "DELETE FROM one_time_keys WHERE rowid = (SELECT rowid FROM one_time_keys"
        " WHERE account_id = ? AND device_id = ? AND kind = ? ORDER BY rowid LIMIT 1)"
        " RETURNING key_id, key, signature",
        (account_id, device_id, kind),
    ).fetchall()
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


def _claim(
    conn: sqlite3.Connection,
    requester: tuple[str, int],
    account_id: str,
    devices: Sequence[int],
) -> PreKeyBundles | None:
    row = conn.execute("SELECT identity_key FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None or row[0] is None:
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
    ) in conn.execute(
        "SELECT device_id, registration_id, signed_prekey_id, signed_prekey, signed_prekey_sig,"
        " kyber_id, kyber_key, kyber_sig FROM device_keys WHERE account_id = ?"
        " ORDER BY device_id",
        (account_id,),
    ).fetchall():
        if (wanted and device_id not in wanted) or (account_id, device_id) == requester:
            continue
        curve = _take_one_time_key(conn, account_id, device_id, _CURVE)
        one_time_kyber = _take_one_time_key(conn, account_id, device_id, _KYBER)
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
    return PreKeyBundles(account_id=account_id, identity_key=row[0], devices=bundles)
