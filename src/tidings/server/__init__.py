"""The Tidings server: REST and WebSocket API over a store and a bus (docs/architecture.md)."""
