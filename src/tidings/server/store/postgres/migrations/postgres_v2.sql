-- Which transaction last moved a member's watermarks, and what a device's latest Welcome could
-- see: the next Welcome reports the marks moved by transactions the previous one could not see.
-- The times (marks_at, welcomed_at) are taken before their transactions commit, so a move and a
-- Welcome running at once on two connections could each miss the other.
ALTER TABLE members ADD COLUMN marks_xid xid8;
ALTER TABLE devices ADD COLUMN welcome_snapshot pg_snapshot;
