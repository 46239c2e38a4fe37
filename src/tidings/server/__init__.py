"""The Tidings server: REST and WebSocket API over a store and a bus (DESIGN.md §1, §2)."""
