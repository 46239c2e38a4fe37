"""Typing indicators, sans I/O: when to send ``Typing`` frames and when what others' notices
expire. The client drives it with its loop's clock (seconds) and a timer at
:meth:`TypingTracker.next_wakeup`.

Outgoing: a ``Typing(on)`` at the first keystroke in a conversation and again every
:data:`SEND_EVERY` seconds while keystrokes continue; ``Typing(off)`` after
:data:`IDLE_AFTER` seconds without one, or when the message is sent. Incoming: a notice
holds for :data:`TYPING_EXPIRES` seconds unless refreshed (a lost "off" cannot leave someone
typing forever). Nothing of it is stored."""

from __future__ import annotations

#: seconds between two "on" frames while the user keeps typing
SEND_EVERY = 3.0
#: seconds without a keystroke after which "off" is sent
IDLE_AFTER = 5.0
#: seconds after which someone else's "typing" lapses without a refresh
TYPING_EXPIRES = 6.0


class TypingTracker:
    def __init__(self) -> None:
        #: conversation → (when "on" was last sent, when the last keystroke was)
        self._out: dict[str, tuple[float, float]] = {}
        #: (conversation, account) → when it lapses
        self._in: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------------ mine

    def keystroke(self, conv_id: str, now: float) -> bool:
        """The user typed in ``conv_id``; True when a ``Typing(on)`` is to be sent now."""
        sent, _ = self._out.get(conv_id, (None, now))
        if sent is None or now - sent >= SEND_EVERY:
            self._out[conv_id] = (now, now)
            return True
        self._out[conv_id] = (sent, now)
        return False

    def stop(self, conv_id: str) -> bool:
        """The message was sent (or the draft cleared); True when ``Typing(off)`` is due."""
        return self._out.pop(conv_id, None) is not None

    def idle(self, now: float) -> list[str]:
        """Conversations where the user stopped typing: send ``Typing(off)`` to each."""
        gone = [c for c, (_, last) in self._out.items() if now - last >= IDLE_AFTER]
        for conv_id in gone:
            del self._out[conv_id]
        return gone

    # ------------------------------------------------------------------ others

    def heard(self, conv_id: str, account_id: str, on: bool, now: float) -> bool:
        """A notice arrived; True when what is shown changes (emit an event)."""
        key = (conv_id, account_id)
        if on:
            was = key in self._in
            self._in[key] = now + TYPING_EXPIRES
            return not was
        return self._in.pop(key, None) is not None

    def expired(self, now: float) -> list[tuple[str, str]]:
        """(conversation, account) pairs whose typing lapsed now."""
        gone = [key for key, until in self._in.items() if until <= now]
        for key in gone:
            del self._in[key]
        return gone

    def typing_in(self, conv_id: str) -> list[str]:
        return sorted(account for conv, account in self._in if conv == conv_id)

    def clear(self) -> list[tuple[str, str]]:
        """Forget everyone typing (the connection went away); the pairs that were."""
        gone = list(self._in)
        self._in.clear()
        self._out.clear()
        return gone

    def next_wakeup(self) -> float | None:
        times = [until for until in self._in.values()]
        times += [last + IDLE_AFTER for _, last in self._out.values()]
        return min(times, default=None)
