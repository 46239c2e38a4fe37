"""Pausing without the event loop: what the app runs in Kivy's ``on_pause``.

On Android, Kivy 2.3.1's ``on_pause`` is followed by SDL blocking the main thread, and with it
the asyncio loop, until the app comes back (or is killed). A task started from ``on_pause``
gets at most one frame: the close handshake and the last ``Ack`` may never leave, and the
server keeps a socket it believes alive until its 60 s idle timeout (pushing nothing to a
device it thinks is online). :func:`pause_now` does the pause synchronously instead, before
``on_pause`` returns: frames already received are stored and acked, the engine stops (which
acks what is stored and asks for the disconnect), and the ``Ack`` and the WebSocket close frame
are written straight to the transport (websockets' sans-I/O protocol; asyncio's
``transport.write`` sends at once when its buffer is empty). The server sees a clean close
within a round trip and treats the device as offline: the next message is pushed.
The measurements behind this are in docs/android.md ("Pause and resume").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from websockets.frames import CloseCode as WsClose

from tidings.protocol import Send, encode

from .core import engine
from .runtime import Runtime

log = logging.getLogger("tidings.client")


@dataclass(frozen=True)
class Paused:
    """What :func:`pause_now` did."""

    #: frames already received and stored (then acked) during the pause
    received: int
    #: frames written to the socket (acks, receipts), not counting the close frame
    sent: int
    #: whether a close frame was written
    closed: bool


def pause_now(runtime: Runtime) -> Paused:
    """Store and ack what has arrived, stop the engine, write its last frames and the close
    frame to the socket, all without awaiting anything. Sends (messages) are not written:
    they stay in the outbox and go with the next connection, under the same ids."""
    items = []
    while not runtime._inbound.empty():
        items.append(runtime._inbound.get_nowait())
    for item in items:
        runtime._feed(item)
    runtime.engine.stop()
    effects = runtime.engine.take_effects()
    changes = runtime._write(effects)
    try:
        runtime._listener(effects, changes)
    except Exception:
        log.exception("the client failed to report changes")
    frames = [
        effect.frame
        for effect in effects
        if isinstance(effect, engine.Transmit) and not isinstance(effect.frame, Send)
    ]
    for effect in effects:
        if isinstance(effect, engine.RefreshConversation):
            runtime._spawn(runtime._refresher(effect.conv_id))  # runs when the loop does
    if changes.undecryptable:
        runtime._spawn(runtime.drive(runtime.sealer.send_resets()))
    disconnect = any(isinstance(effect, engine.Disconnect) for effect in effects)
    socket = runtime._socket
    if disconnect:
        runtime._generation += 1  # events of this socket are ignored from now on
        runtime._socket = None
    sent = 0
    closed = False
    if socket is not None:
        try:
            for frame in frames:
                socket.protocol.send_binary(encode(frame))
                sent += 1
            if disconnect:
                socket.protocol.send_close(WsClose.GOING_AWAY, "paused")
                closed = True
            socket.send_data()
        except Exception as exc:  # a socket already closing: nothing left to tell the server
            log.info("pausing: the socket could not take the last frames (%r)", exc)
    return Paused(received=len([i for i in items if i is not None]), sent=sent, closed=closed)


def data_version(runtime: Runtime) -> int:
    """SQLite's ``PRAGMA data_version``: changes when another connection (another process)
    committed to the profile's database."""
    return int(runtime.store.db.execute("PRAGMA data_version").fetchone()[0])
