"""Broadcast channels: one log per channel, fanned out through a durable queue."""
