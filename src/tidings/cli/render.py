"""What the ``tidings`` command prints for people: other people's text made safe for a
terminal, and every line naming its chat.

Other people choose message bodies, group titles, usernames and reply previews, so none of it
may reach the terminal raw: a C0 or C1 control character (ESC starting a colour or an OSC title
sequence, BEL, backspace, carriage return), DEL and the bidi controls (overrides, embeddings,
isolates, which reorder what follows them) are shown visibly as ``\\x1b`` / ``\\u202e``.
A message keeps to one record: its continuation lines (``\\n``, U+2028, U+2029) are indented
by :data:`CONTINUATION`, so every line that starts without it begins a new message.
``--json`` output is not touched (JSON escapes what it must).
"""

from __future__ import annotations

import time

from tidings.client.types import Conversation, Message

#: what continuation lines of a multi-line message start with
CONTINUATION = "      | "

#: bidi formatting characters that reorder the text after them
_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A)) | {0x061C}
_NEWLINES = ("\r\n", "\n", "\u2028", "\u2029", "\x85")


def _visible(ch: str) -> str:
    cp = ord(ch)
    if (cp < 0x20 and ch != "\t") or cp == 0x7F or 0x80 <= cp <= 0x9F:
        return f"\\x{cp:02x}"
    if cp in _BIDI:
        return f"\\u{cp:04x}"
    return ch


def safe(text: str) -> str:
    """``text`` with every control character shown visibly (newlines too): for one-line
    fields such as names and titles."""
    return "".join(_visible(ch) for ch in text)


def safe_body(text: str, indent: str = CONTINUATION) -> str:
    """A message body for a terminal: controls shown visibly, continuation lines indented."""
    for newline in _NEWLINES:
        text = text.replace(newline, "\n")
    return ("\n" + indent).join(safe(line) for line in text.split("\n"))


def chat_name(conv: Conversation | None) -> str:
    """How a line names its chat: ``#Title`` for a group, ``@name`` for a direct chat, the
    note to self by its title."""
    if conv is None:
        return "(unknown chat)"
    if conv.note_to_self:
        return f"[{safe(conv.title)}]"
    if conv.kind == "group":
        return f"#{safe(conv.title)}" if conv.title else "#(untitled group)"
    if conv.kind == "channel":
        return f"#{safe(conv.title)} (channel)"
    return f"@{safe(conv.title)}"


def clock_text(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def message_line(message: Message, chat: str | None = None) -> str:
    """One message as one record: ``<chat> [seq] time sender: body  (marks)  id``."""
    seq = "-" if message.seq is None else str(message.seq)
    who = "me" if message.is_own else safe(message.sender_name)
    prefix = f"{chat} " if chat else ""
    body = safe_body(message.body)
    if message.attachments and not message.deleted:
        from tidings.cli.attachments import attachment_tags

        body = f"{attachment_tags(message)} {body}".rstrip()
    if message.deleted:
        body = "(this message was deleted)"
    line = f"{prefix}[{seq:>5}] {clock_text(message.created_at)} {who}: {body}"
    if message.edited:
        line += "  (edited)"
    line += unverified(message)
    if message.reply_preview:
        line += f"  (reply to {safe(message.reply_preview)})"
    if message.reactions:
        line += "  " + " ".join(f"{safe(emoji)}{len(users)}" for emoji, users in message.reactions)
    if message.is_own and message.kind == "text" and not message.deleted:
        line += f"  <{message.status}>"
        if message.fail_reason and message.status == "failed":
            line += f" ({safe(message.fail_reason)})"
    return f"{line}  {message.id}"


def unverified(message: Message) -> str:
    """The mark of a channel post whose signature did not check out."""
    return "" if message.verified else "  (unverified)"


def conversation_line(conv: Conversation) -> str:
    """A chat list entry: its name, how to address it, unread count and preview."""
    address = f"#{conv.id}" if conv.kind in ("group", "channel") else ""
    unread = f" ({conv.unread} unread)" if conv.unread else ""
    if conv.kind == "channel":
        unread += f" ({conv.subscribers} subscribers{', admin' if conv.is_admin else ''})"
    preview = ""
    last = conv.last_message
    if last is not None:
        who = "me" if last.is_own else safe(last.sender_name)
        text = "(deleted)" if last.deleted else safe(last.body[:60])
        preview = f" — {who}: {text}"
    hint = f"  [{address}]" if address else ""
    return f"{chat_name(conv)}{unread}{preview}{hint}"


def conversation_text(conv: Conversation) -> str:
    lines = [f"{chat_name(conv)}  [{conv.kind}]", f"{len(conv.members)} members:"]
    lines += [f"  @{safe(m.username)} ({m.role})" for m in conv.members]
    return "\n".join(lines)
