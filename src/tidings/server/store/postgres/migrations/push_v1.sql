-- Push notifications, component "push", version 1 (as sqlite/migrations/push_v1.sql).

-- One registration per device; it goes with the device (removal, identity replacement).
CREATE TABLE push_registrations (
    account_id  TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    platform    TEXT NOT NULL CHECK (platform IN ('apns', 'fcm', 'webpush', 'log')),
    token       TEXT NOT NULL,
    p256dh      TEXT NOT NULL DEFAULT '',
    auth        TEXT NOT NULL DEFAULT '',
    topic       TEXT NOT NULL DEFAULT '',
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id)
        ON DELETE CASCADE
);

-- The account's notification level of one conversation (no row: 'all', not muted).
CREATE TABLE notify_levels (
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    conv_id      TEXT NOT NULL REFERENCES conversations (id),
    level        TEXT NOT NULL CHECK (level IN ('all', 'mentions', 'none')),
    muted_until  BIGINT,
    PRIMARY KEY (conv_id, account_id)
);
CREATE INDEX notify_levels_account ON notify_levels (account_id);
