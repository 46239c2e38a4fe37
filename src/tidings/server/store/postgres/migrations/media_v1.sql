-- Attachment blobs, component "media", version 1 (as sqlite/migrations/media_v1.sql): which
-- account holds which blob; the bytes live in the blob store, never here.
CREATE TABLE blobs (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    size          BIGINT NOT NULL,
    kind          TEXT NOT NULL DEFAULT 'file',
    parts         INTEGER NOT NULL DEFAULT 1,
    upload_id     TEXT,
    created_at    BIGINT NOT NULL,
    completed_at  BIGINT
);
CREATE INDEX blobs_owner ON blobs (owner);
-- The quota ledger: bytes of live blobs per account, kept equal to the sum over blobs.
CREATE TABLE blob_usage (
    account_id  TEXT PRIMARY KEY,
    bytes       BIGINT NOT NULL
);
