-- The "social" component: encrypted profiles, block lists, privacy settings, and when each
-- member's delivered and read watermarks last moved (for message details).

-- The newest encrypted profile of an account (opaque: sealed under its profile key).
CREATE TABLE profiles (
    account_id  TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    blob        BLOB NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- blocker blocked blocked: nothing of blocked's reaches blocker in direct conversations or
-- through DeviceSend, and blocked sees none of blocker's receipts there.
CREATE TABLE blocks (
    blocker     TEXT NOT NULL,
    blocked     TEXT NOT NULL,
    blocked_at  INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;
CREATE INDEX blocks_by_blocked ON blocks (blocked);

-- Privacy settings (an account without a row has both on).
CREATE TABLE privacy_settings (
    account_id     TEXT PRIMARY KEY,
    read_receipts  INTEGER NOT NULL DEFAULT 1,
    typing         INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;

-- when this member's delivered (read) watermark last moved (ms; 0: unknown)
ALTER TABLE members ADD COLUMN delivered_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN read_at INTEGER NOT NULL DEFAULT 0;
