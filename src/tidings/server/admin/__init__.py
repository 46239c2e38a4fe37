"""Operating a server: the admin service (users, devices, invites, stats) and the admin API it
is reached through, on a Unix socket in the data directory (``tidings admin``, see
docs/deploy.md for why a socket rather than opening the database from a second process)."""
