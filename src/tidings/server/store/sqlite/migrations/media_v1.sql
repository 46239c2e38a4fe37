-- Attachment blobs (component "media"): which account holds which blob, for quotas, ownership
-- and garbage collection. The bytes live in the blob store (files or S3), never here; the
-- server cannot see which messages refer to a blob.
CREATE TABLE blobs (
    id TEXT PRIMARY KEY,                -- the blob store's random id (192 bits, URL-safe)
    owner TEXT NOT NULL,                -- account id of the uploader
    size INTEGER NOT NULL,              -- exact ciphertext length in bytes
    kind TEXT NOT NULL DEFAULT 'file',  -- image | video | voice | file, as the client said
    parts INTEGER NOT NULL DEFAULT 1,   -- parts of the upload (1 below the part size)
    upload_id TEXT,                     -- the S3 multipart upload id while one is open
    created_at INTEGER NOT NULL,        -- ms
    completed_at INTEGER                -- ms; NULL while the upload is open
);
CREATE INDEX blobs_owner ON blobs (owner);
-- The quota ledger: bytes of live blobs (pending and completed) per account, kept equal to the
-- sum over blobs in the same transactions.
CREATE TABLE blob_usage (
    account_id TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL
);
