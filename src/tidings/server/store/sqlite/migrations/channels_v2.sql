-- Broadcast channels, component "channels", version 2: a channel's owner and admins are found
-- through an index instead of by reading every member row of the channel (each read of a
-- channel lists its admins: one of 50,000 subscribers read 50,000 rows every time).
CREATE INDEX channel_members_by_role ON channel_members (channel, role);
