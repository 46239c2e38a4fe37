"""Opening: the engine's ciphertext store effects become the plaintext ones the store writes.

The engine hands over envelopes as they came (:class:`~.engine.StoreIncoming`,
:class:`~.engine.StoreDeviceEnvelope`); :meth:`Opener.open` decrypts them with the device's
:class:`~.sealing.EndToEnd` and puts :class:`StoreOpened` in their place. The caller runs it
inside the store's transaction: the session state a decryption advanced commits together with
the message it gave (or neither does). Decrypting is synchronous: no I/O is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from tidings.protocol import Envelope
from tidings.protocol.content import Content

from . import engine
from .payload import open_bound, open_envelope
from .sealing import EndToEnd, Failed


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """A conversation envelope after opening. A system envelope (``envelope.kind``) keeps its
    ``SystemEvent`` in ``envelope.payload`` (not encrypted); otherwise ``content`` is what it
    said, or None when there is nothing to show (content this client does not understand, a
    group message waiting for its sender key), or ``undecryptable``."""

    envelope: Envelope
    content: Content | None = None
    undecryptable: bool = False


@dataclass(frozen=True, slots=True)
class StoreOpened:
    """Persist opened envelopes of one conversation (seq order). An envelope whose id is
    already stored is ignored by the store."""

    conv_id: str
    messages: tuple[OpenedEnvelope, ...]


#: effects that write to the store (those of a batch are applied in one transaction)
WRITE_EFFECTS: tuple[type, ...] = (*get_args(engine.StoreEffect), StoreOpened)


def writes(effects: Sequence[object]) -> bool:
    """Whether applying ``effects`` needs a transaction."""
    return any(isinstance(effect, WRITE_EFFECTS) for effect in effects)


class Opener:
    """Decrypts what the engine hands to the store (see the module docstring)."""

    def __init__(self, e2ee: EndToEnd) -> None:
        self.e2ee = e2ee

    def open(self, effects: Sequence[engine.Effect]) -> list[engine.Effect | StoreOpened]:
        """``effects`` with every envelope effect replaced by what it opened to (in order)."""
        out: list[engine.Effect | StoreOpened] = []
        for effect in effects:
            match effect:
                case engine.StoreIncoming():
                    opened = tuple(self._open(env) for env in effect.envelopes)
                    out.append(StoreOpened(effect.conv_id, opened))
                case engine.StoreDeviceEnvelope():
                    # a sender key (group messages that waited for it open now) or a session
                    # reset request
                    result = self.e2ee.open_device_envelope(effect.envelope)
                    for env, plaintext in result.released:
                        out.append(
                            StoreOpened(env.conv, (_opened(env, open_bound(env, plaintext)),))
                        )
                case _:
                    out.append(effect)
        return out

    def _open(self, env: Envelope) -> OpenedEnvelope:
        if env.kind == "system":
            self.e2ee.on_system(env.conv, env.payload)  # a member left: a new sender key
            return OpenedEnvelope(env)
        return _opened(env, open_envelope(env, self.e2ee))


def _opened(env: Envelope, opened: Content | Failed | None) -> OpenedEnvelope:
    if isinstance(opened, Failed):
        return OpenedEnvelope(env, undecryptable=True)
    return OpenedEnvelope(env, opened)
