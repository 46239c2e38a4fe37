-- Operator administration, component "admin", version 1 (as sqlite/migrations/admin_v1.sql).
CREATE TABLE invites (
    id          TEXT COLLATE "C" PRIMARY KEY,
    token_hash  BYTEA NOT NULL UNIQUE,
    max_uses    INTEGER NOT NULL,
    uses        INTEGER NOT NULL DEFAULT 0,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    note        TEXT NOT NULL DEFAULT '',
    username    TEXT
);

CREATE TABLE account_status (
    account_id  TEXT PRIMARY KEY REFERENCES accounts (id),
    status      TEXT NOT NULL CHECK (status IN ('disabled', 'removed')),
    changed_at  BIGINT NOT NULL
);
