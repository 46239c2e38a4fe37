"""The WebSocket side of the server: one :class:`DeviceConnection` per connected device,
driven by its :class:`~tidings.server.ws.phase.Phase` and the frame handlers of
:mod:`tidings.server.ws.handlers`, behind the endpoint of :mod:`tidings.server.ws.endpoint`.
uvicorn runs it with the lighter protocol of :mod:`tidings.server.ws.uvicorn_protocol`."""

from tidings.server.ws.connection import DeviceConnection, Socket
from tidings.server.ws.endpoint import Gateway, WebSocketFirst, endpoint
from tidings.server.ws.phase import Phase, PhaseError

__all__ = [
    "DeviceConnection",
    "Gateway",
    "Phase",
    "PhaseError",
    "Socket",
    "WebSocketFirst",
    "endpoint",
]
