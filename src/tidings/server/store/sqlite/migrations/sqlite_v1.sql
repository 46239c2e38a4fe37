-- Tidings server schema, version 1. Applied by tidings.server.store.sqlite; the version lives
-- in PRAGMA user_version. Times are milliseconds since the Unix epoch.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    username    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE devices (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    device_id   INTEGER NOT NULL,
    name        TEXT NOT NULL,
    -- lookup half of the bearer token; the secret half is stored only as SHA-256
    token_key   TEXT NOT NULL UNIQUE,
    token_hash  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, device_id)
);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    title       TEXT NOT NULL,
    -- "<account>|<account>" in sorted order for a direct conversation: one per pair
    direct_key  TEXT UNIQUE,
    last_seq    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE members (
    conv_id     TEXT NOT NULL REFERENCES conversations (id),
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_seq  INTEGER NOT NULL,
    delivered   INTEGER NOT NULL,
    read        INTEGER NOT NULL,
    -- seq of this member's newest own message (0: none), for the Welcome's watermarks
    last_sent   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_id, account_id)
);  -- with a rowid: it orders members who joined with the same envelope (oldest first)
CREATE INDEX members_by_account ON members (account_id);

CREATE TABLE envelopes (
    conv_id        TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    id             BLOB NOT NULL,
    sender         TEXT NOT NULL,
    sender_device  INTEGER NOT NULL,
    ts             INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    payload        BLOB NOT NULL,
    -- JSON array of account ids, NULL when empty
    mentions       TEXT,
    PRIMARY KEY (conv_id, seq)
) WITHOUT ROWID;
-- idempotency: one message per (sender, client id)
CREATE UNIQUE INDEX envelopes_by_client_id ON envelopes (sender, id);

CREATE TABLE pending (
    account_id  TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    conv_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    queued_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, device_id, conv_id, seq)
) WITHOUT ROWID;
CREATE INDEX pending_by_age ON pending (queued_at);
