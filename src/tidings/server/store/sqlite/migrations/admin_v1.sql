-- Operator administration (tidings admin): invites (registration tokens) and accounts an
-- operator disabled or removed. Component "admin", version 1.

CREATE TABLE invites (
    -- short public id, for list and revoke
    id          TEXT PRIMARY KEY,
    -- SHA-256 of the token; the token itself is shown once, at creation
    token_hash  BLOB NOT NULL UNIQUE,
    max_uses    INTEGER NOT NULL,
    uses        INTEGER NOT NULL DEFAULT 0,
    -- ms since the epoch; NULL: never expires
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    note        TEXT NOT NULL DEFAULT '',
    -- set: only this username may sign up with it (tidings admin user add)
    username    TEXT
);

CREATE TABLE account_status (
    account_id  TEXT PRIMARY KEY REFERENCES accounts (id),
    -- disabled: tokens refused, devices kept; removed: devices dropped, username kept reserved
    status      TEXT NOT NULL CHECK (status IN ('disabled', 'removed')),
    changed_at  INTEGER NOT NULL
);
