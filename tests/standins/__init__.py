"""Local stand-ins for APNs, FCM and WebPush services that speak the real protocols.

Test-only. Each runs in the test's event loop on a free 127.0.0.1 port (hypercorn), verifies
every request the way the real service would (method, path, headers, JWT signatures,
encryption) and records what it received.
"""
