"""The command line's attachments: ``tidings send <chat> --file PATH [--caption TEXT]``,
``tidings send <chat> --voice PATH`` and ``tidings download MESSAGE-ID [-o DIR]``.

The kind of a file is detected from its content by the client core (a photo is re-encoded
without metadata, audio given with ``--voice`` becomes an Ogg Opus voice note). Upload and
download progress goes to standard error as a plain bar, only for people: ``--json`` keeps
standard output to its one JSON object and standard error to warnings and errors. Registered by
:func:`tidings.cli.main.build_parser`; ``history``/``sync`` show attachments through
:mod:`tidings.cli.attachments`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from tidings.cli.attachments import attachment_json, attachment_tags, human_size
from tidings.cli.common import (
    EXIT_USAGE,
    CliError,
    EventWatch,
    Outcome,
    opened,
    parse_message_id,
    resolve,
    text_arg,
)
from tidings.client.types import Message, MessageStatus, TransferProgress

#: seconds an upload may take before ``send`` gives up waiting (the upload then resumes at the
#: next ``tidings sync``)
UPLOAD_WAIT = 600.0
#: columns of the progress bar
BAR_WIDTH = 30


class ProgressBar:
    """A one-line progress bar on standard error, redrawn at most ten times a second."""

    def __init__(self, label: str, out: TextIO | None = None, enabled: bool = True) -> None:
        self.label = label
        self.out = out if out is not None else sys.stderr
        self.enabled = enabled
        self._last = 0.0
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        fraction = done / total if total else 1.0
        filled = int(fraction * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.out.write(
            f"\r{self.label} [{bar}] {fraction:4.0%} {human_size(done)}/{human_size(total)}"
        )
        self.out.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False


def add_send_options(p: argparse.ArgumentParser) -> None:
    """``--file``, ``--voice`` and ``--caption`` on ``tidings send``."""
    what = p.add_mutually_exclusive_group()
    what.add_argument("--file", default=None, metavar="PATH", help="send a photo, video or file")
    what.add_argument("--voice", default=None, metavar="PATH", help="send audio as a voice note")
    p.add_argument("--caption", default=None, help="a caption for --file (or give the text)")


def add_parsers(
    sub: argparse._SubParsersAction[Any],
    common: argparse.ArgumentParser,
    profile: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser(
        "download", parents=[common, profile], help="download a message's attachments"
    )
    p.add_argument("message_id", metavar="MESSAGE-ID")
    p.add_argument(
        "-o", "--output", default=None, metavar="DIR",
        help="copy the files into DIR (default: print where they are in the media cache)",
    )  # fmt: skip
    p.add_argument("--index", type=int, default=None, help="only this attachment (0 = first)")
    p.set_defaults(handler=cmd_download)


def _wants_bar(args: argparse.Namespace) -> bool:
    return not bool(getattr(args, "json", False))


async def cmd_send_media(args: argparse.Namespace) -> Outcome:
    """``send --file``/``--voice``: store, upload with a progress bar, wait for ``sent``."""
    reply_to = parse_message_id(args.reply_to) if args.reply_to else None
    caption = args.caption
    if caption is None and args.text is not None:
        caption = text_arg(args.text)
    if args.voice is not None and (caption or reply_to):
        raise CliError("usage", "a voice note takes no caption and no --reply-to", EXIT_USAGE)
    path = Path(args.file if args.file is not None else args.voice)
    if not await asyncio.to_thread(path.is_file):
        raise CliError("not_found", f"no such file: {path}")
    bar = ProgressBar(f"sending {path.name}", enabled=_wants_bar(args))
    async with opened(Path(args.profile)) as client, EventWatch(client) as watch:
        await client.start()
        conv = await resolve(client, args.target)
        events = client.events()
        sent: Message
        if args.voice is not None:
            sent = await client.send_voice(conv.id, path)
        else:
            sent = await client.send_file(conv.id, path, caption=caption, reply_to=reply_to)

        async def progress() -> None:
            async for event in events:
                if isinstance(event, TransferProgress) and event.message_id == sent.id:
                    bar.update(event.done, event.total)

        shown = asyncio.create_task(progress())
        current: list[Message] = [sent]

        async def uploaded() -> bool:
            message = await client.message(sent.id)
            if message is not None:
                current[0] = message
            states = {a.state for a in current[0].attachments}
            return current[0].status != MessageStatus.SENDING or not (
                states & {"preparing", "uploading"}
            )

        async def left_sending() -> bool:
            await uploaded()
            return current[0].status != MessageStatus.SENDING

        try:
            await watch.until(uploaded, UPLOAD_WAIT)
            await watch.until(left_sending, args.wait)
        finally:
            shown.cancel()
            bar.finish()
        message = current[0]
    if message.status == MessageStatus.FAILED:
        raise CliError(
            message.fail_reason or "failed",
            f"message {message.id} failed: {message.fail_reason or 'refused'}",
        )
    outcome = Outcome(
        {
            "id": str(message.id),
            "conv_id": message.conv_id,
            "seq": message.seq,
            "status": str(message.status),
            "attachments": [attachment_json(a) for a in message.attachments],
        },
        f"{message.id}  {attachment_tags(message)}",
    )
    if message.status == MessageStatus.SENDING:
        outcome.warnings.append(
            "not acknowledged in time: kept in the outbox, `tidings sync` finishes sending it"
        )
    return outcome


async def cmd_download(args: argparse.Namespace) -> Outcome:
    """Download, verify and decrypt a message's attachments (every one, or ``--index``)."""
    message_id: uuid.UUID = parse_message_id(args.message_id)
    dest = Path(args.output) if args.output is not None else None
    files: list[dict[str, Any]] = []
    async with opened(Path(args.profile)) as client:
        message = await client.message(message_id)
        if message is None:
            raise CliError("not_found", f"no message {message_id} in this profile")
        if not message.attachments:
            raise CliError("not_found", f"message {message_id} has no attachments")
        indexes = range(len(message.attachments))
        if args.index is not None:
            if not 0 <= args.index < len(message.attachments):
                raise CliError("not_found", f"message {message_id} has no attachment {args.index}")
            indexes = range(args.index, args.index + 1)
        for index in indexes:
            attachment = message.attachments[index]
            bar = ProgressBar(f"downloading {attachment.kind}", enabled=_wants_bar(args))
            try:
                path = await client.download(message_id, dest, bar.update, index=index)
            finally:
                bar.finish()
            files.append({**attachment_json(attachment), "path": str(path), "state": "ready"})
    text = "\n".join(f["path"] for f in files)
    return Outcome({"id": str(message_id), "files": files}, text)
