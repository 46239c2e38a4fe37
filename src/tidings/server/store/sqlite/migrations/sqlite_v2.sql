-- Version 2: enough to tell a reconnecting device which watermarks moved while it was away.

-- when this member's delivered/read watermarks last moved (ms)
ALTER TABLE members ADD COLUMN marks_at INTEGER NOT NULL DEFAULT 0;
-- when this device last got a Welcome (ms); 0: never
ALTER TABLE devices ADD COLUMN welcomed_at INTEGER NOT NULL DEFAULT 0;
