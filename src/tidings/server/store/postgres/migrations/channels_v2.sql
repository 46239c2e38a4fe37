-- Broadcast channels, component "channels", version 2 (as the SQLite store's channels_v2.sql):
-- a channel's owner and admins are found through an index instead of by reading every member
-- row of the channel.
CREATE INDEX channel_members_by_role ON channel_members (channel, role);
