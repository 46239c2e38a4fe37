-- Version 3: end-to-end encryption (docs/e2ee.md). The server keeps public key material,
-- per-device ciphertexts, to-device queues and pending device links; never a private key.

-- the account's identity public key (0x05 || 32 bytes); NULL until a device uploads keys
ALTER TABLE accounts ADD COLUMN identity_key BLOB;
-- last dseq given to a message queued for this device
ALTER TABLE devices ADD COLUMN last_dseq INTEGER NOT NULL DEFAULT 0;
-- this device's own ciphertext of a message (Send.device_payloads), until it acks
ALTER TABLE pending ADD COLUMN payload BLOB;

-- A device "has keys" (and counts as a device for encryption) once it has a row here.
CREATE TABLE device_keys (
    account_id          TEXT NOT NULL,
    device_id           INTEGER NOT NULL,
    registration_id     INTEGER NOT NULL,
    signed_prekey_id    INTEGER NOT NULL,
    signed_prekey       BLOB NOT NULL,
    signed_prekey_sig   BLOB NOT NULL,
    signed_prekey_at    INTEGER NOT NULL,
    kyber_id            INTEGER NOT NULL,
    kyber_key           BLOB NOT NULL,
    kyber_sig           BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id)
) WITHOUT ROWID;

-- One-time prekeys; kind 0: Curve25519 (no signature), 1: Kyber (signed). Claimed in rowid
-- order (oldest first) and deleted in the same transaction.
CREATE TABLE one_time_keys (
    account_id  TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    kind        INTEGER NOT NULL CHECK (kind IN (0, 1)),
    key_id      INTEGER NOT NULL,
    key         BLOB NOT NULL,
    signature   BLOB,
    UNIQUE (account_id, device_id, kind, key_id)
);

-- Messages to single devices (DeviceSend), until the device acks them with Ack.device_upto.
CREATE TABLE device_queue (
    account_id     TEXT NOT NULL,
    device_id      INTEGER NOT NULL,
    dseq           INTEGER NOT NULL,
    id             BLOB NOT NULL,
    sender         TEXT NOT NULL,
    sender_device  INTEGER NOT NULL,
    ts             INTEGER NOT NULL,
    payload        BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id, dseq)
) WITHOUT ROWID;
CREATE INDEX device_queue_by_age ON device_queue (ts);

-- Idempotency of DeviceSend: one queueing per (sender device, id); the answer is kept.
CREATE TABLE device_sends (
    sender         TEXT NOT NULL,
    sender_device  INTEGER NOT NULL,
    id             BLOB NOT NULL,
    ts             INTEGER NOT NULL,
    -- JSON array of the addresses answered as unknown, NULL when none
    unknown        TEXT,
    PRIMARY KEY (sender, sender_device, id)
) WITHOUT ROWID;
CREATE INDEX device_sends_by_age ON device_sends (ts);

-- Linking a new device. The secret is stored only as SHA-256. Once approved, account_id and
-- device_id name the device made for it (its token is made when the new device fetches).
CREATE TABLE provisioning (
    id             TEXT PRIMARY KEY,
    secret_hash    BLOB NOT NULL,
    ephemeral_key  BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    account_id     TEXT,
    device_id      INTEGER,
    sealed         BLOB
) WITHOUT ROWID;
CREATE INDEX provisioning_by_expiry ON provisioning (expires_at);
