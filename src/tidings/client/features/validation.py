"""What the client refuses before anything is stored or sent: empty texts, reactions that are
not one emoji, edits and deletions the receivers would refuse anyway. The server cannot see
content, so these checks live here (both the CLI and the app go through them)."""

from __future__ import annotations

from tidings.protocol.content import MAX_TEXT_CHARS

from ..errors import ClientError
from ..graphemes import is_emoji

#: the reactions a quick bar offers, in order (any single emoji is accepted)
QUICK_REACTIONS: tuple[str, ...] = ("❤️", "👍", "👎", "😂", "😮", "😢")


class EmptyMessage(ClientError):
    """``empty_message``: a text with nothing but whitespace (or nothing at all)."""

    def __init__(self) -> None:
        super().__init__("empty_message", "a message needs some text")


class NotAnEmoji(ClientError):
    """``bad_emoji``: a reaction must be exactly one emoji."""

    def __init__(self, emoji: str) -> None:
        super().__init__("bad_emoji", f"a reaction is a single emoji, not {emoji!r}")


def check_text(body: str) -> str:
    """``body`` if it can be sent as a text; raises :class:`EmptyMessage` for an empty or
    whitespace-only one and ``payload_too_large`` for one over the limit."""
    if not body.strip():
        raise EmptyMessage
    if len(body) > MAX_TEXT_CHARS:
        raise ClientError("payload_too_large", f"a text has at most {MAX_TEXT_CHARS} characters")
    return body


def check_emoji(emoji: str) -> str:
    """``emoji`` if it is exactly one emoji (one grapheme cluster: ZWJ sequences, skin tones,
    flags and keycaps included); raises :class:`NotAnEmoji` otherwise."""
    if not is_emoji(emoji):
        raise NotAnEmoji(emoji)
    return emoji
