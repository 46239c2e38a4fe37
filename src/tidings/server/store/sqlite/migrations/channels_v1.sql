-- Broadcast channels, component "channels", version 1 (tidings.server.store.sqlite.channels).
-- A post is stored once; readers keep their own cursors on their devices.

CREATE TABLE channels (
    id           TEXT PRIMARY KEY,
    title        TEXT NOT NULL,
    handle       TEXT UNIQUE,
    public       INTEGER NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    owner        TEXT NOT NULL REFERENCES accounts (id),
    last_seq     INTEGER NOT NULL DEFAULT 0,
    subscribers  INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- Everyone in a channel: the owner, admins and subscribers (admins count as subscribers).
CREATE TABLE channel_members (
    channel     TEXT NOT NULL REFERENCES channels (id),
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'subscriber')),
    notify      TEXT NOT NULL DEFAULT 'none' CHECK (notify IN ('all', 'none')),
    joined_at   INTEGER NOT NULL,
    PRIMARY KEY (channel, account_id)
) WITHOUT ROWID;
CREATE INDEX channel_members_by_account ON channel_members (account_id);

-- The log: one row per post. rowid is the global order the fan-out queue follows.
CREATE TABLE channel_posts (
    pos            INTEGER PRIMARY KEY AUTOINCREMENT,
    channel        TEXT NOT NULL REFERENCES channels (id),
    seq            INTEGER NOT NULL,
    id             BLOB NOT NULL,
    author         TEXT NOT NULL,
    author_device  INTEGER NOT NULL,
    ts             INTEGER NOT NULL,
    server_ts      INTEGER NOT NULL,
    content        BLOB NOT NULL,
    signature      BLOB NOT NULL,
    UNIQUE (channel, seq),
    UNIQUE (channel, id)
);

CREATE TABLE channel_invites (
    token       TEXT PRIMARY KEY,
    channel     TEXT NOT NULL REFERENCES channels (id),
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) WITHOUT ROWID;
CREATE INDEX channel_invites_by_channel ON channel_invites (channel);

-- How far a fan-out queue got through the log (pos of channel_posts): "local" for the
-- in-process queue, "publish" for what was handed to JetStream.
CREATE TABLE channel_fanout (
    name      TEXT PRIMARY KEY,
    position  INTEGER NOT NULL
) WITHOUT ROWID;
