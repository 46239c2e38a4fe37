-- The "social" component, version 1 (as sqlite/migrations/social_v1.sql): encrypted profiles,
-- block lists, privacy settings, and when each member's delivered and read watermarks last
-- moved (for message details).

-- The newest encrypted profile of an account (opaque: sealed under its profile key).
CREATE TABLE profiles (
    account_id  TEXT COLLATE "C" PRIMARY KEY,
    version     BIGINT NOT NULL,
    blob        BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- blocker blocked blocked: nothing of blocked's reaches blocker in direct conversations or
-- through DeviceSend, and blocked sees none of blocker's receipts there.
CREATE TABLE blocks (
    blocker     TEXT COLLATE "C" NOT NULL,
    blocked     TEXT COLLATE "C" NOT NULL,
    blocked_at  BIGINT NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX blocks_by_blocked ON blocks (blocked);

-- Privacy settings (an account without a row has both on); 1 on, 0 off, as in SQLite.
CREATE TABLE privacy_settings (
    account_id     TEXT COLLATE "C" PRIMARY KEY,
    read_receipts  INTEGER NOT NULL DEFAULT 1,
    typing         INTEGER NOT NULL DEFAULT 1
);

-- when this member's delivered (read) watermark last moved (ms; 0: unknown)
ALTER TABLE members ADD COLUMN delivered_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN read_at BIGINT NOT NULL DEFAULT 0;
