"""Chaos: three people chat through the ``tidings`` command over a faulty link while the server
is SIGKILLed and restarted; once the link heals, every message is delivered exactly once and in
order.

A real server runs as a subprocess (the ``server`` fixture); :class:`FaultProxy` sits between it
and three CLI profiles (alice, bob, carol), which are created through the proxy too. Each person
sends into their two direct chats and one group, one ``tidings send`` per message, with a
``tidings sync`` now and then, all three at once, while the proxy refuses connections, cuts them
mid-frame, stalls them, splits and delays writes, and ends every connection after a random
lifetime; now and then the test SIGKILLs a ``tidings send`` while it runs (a client crash). In
the middle the server is SIGKILLed and started again on the same port and data directory. Then
the link heals, everyone syncs, and each history must hold every message the CLI stored (every
send it answered, and each killed one that the sender's own history holds) exactly once, in its
sender's order, with the same seq everywhere, and the sender's copy at least ``sent``.

The faults follow a seed: ``TIDINGS_CHAOS_SEED=<n>`` replays a schedule (as far as the kernel's
timing allows; see tests/faultproxy.py). A failure prints the seed, the proxy's counters, every
command with its outcome, and the end of the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import os
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_faultproxy() -> ModuleType:
    """tests/faultproxy.py (tests/ is not on sys.path when only this directory is collected)."""
    if "faultproxy" in sys.modules:
        return sys.modules["faultproxy"]
    path = Path(__file__).resolve().parent.parent / "faultproxy.py"
    spec = importlib.util.spec_from_file_location("faultproxy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["faultproxy"] = module
    spec.loader.exec_module(module)
    return module


faultproxy = _load_faultproxy()
FaultProfile = faultproxy.FaultProfile
FaultProxy = faultproxy.FaultProxy

SEED = int(os.environ.get("TIDINGS_CHAOS_SEED", "1729"))
PEOPLE = ("alice", "bob", "carol")
#: messages each person sends while the link is faulty (besides one per chat to set up)
ROUNDS = 12
#: the part of those ``tidings send`` that the test SIGKILLs while they run
KILL_SEND = 0.1
#: the server is SIGKILLed once this many chaos-phase sends have finished, ...
KILL_AFTER = ROUNDS * len(PEOPLE) // 3
#: ... and started again this long after
DOWN_FOR = 4.0
#: wall-time bounds: one command, the chaos phase, the healing phase
COMMAND_TIMEOUT = 40.0
CHAOS_WITHIN = 60.0
HEAL_WITHIN = 35.0
DONE = {"sent", "delivered", "read"}

#: while accounts, chats and the group are set up: slow and chopped, but nothing lost, so that
#: an account creation is never ambiguous
SETUP_FAULTS = FaultProfile(split=0.3, split_bytes=(1, 300), delay=0.2, delay_seconds=(0.0, 0.03))
#: the chaos phase
CHAOS_FAULTS = FaultProfile(
    refuse=0.1,
    cut=0.04,
    stall=0.06,
    stall_seconds=(0.2, 1.5),
    stall_both=0.5,
    stall_then_cut=0.4,
    split=0.3,
    split_bytes=(1, 300),
    split_pause=(0.0, 0.002),
    delay=0.2,
    delay_seconds=(0.0, 0.05),
    lifetime=(0.3, 5.0),
)


def _command() -> list[str]:
    script = Path(sys.executable).parent / "tidings"
    if script.exists():
        return [str(script)]
    found = shutil.which("tidings")
    return [found] if found else [sys.executable, "-m", "tidings"]


TIDINGS = _command()


@dataclasses.dataclass
class Outcome:
    args: tuple[str, ...]
    code: int | None  # None: killed after COMMAND_TIMEOUT
    out: Any
    err: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclasses.dataclass
class Sent:
    """One ``tidings send``: what was asked, and what the CLI said."""

    sender: str
    chat: str  # "@bob" or "#<group id>"
    body: str
    #: the test SIGKILLs this `tidings send` after this many seconds (a client crash)
    kill_after: float | None = None
    outcome: Outcome | None = None

    @property
    def message_id(self) -> str | None:
        if self.outcome is not None and self.outcome.ok:
            return str(self.outcome.out["id"])
        return None


class Journal:
    """Every command and event of the test, for the failure report."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(f"{time.monotonic() - self.began:7.2f}s {text}")

    def dump(self) -> str:
        return "\n".join(self.lines)


class Person:
    """One CLI profile, driven one subprocess per command."""

    def __init__(self, name: str, profile: Path, journal: Journal, procs: set[Any]) -> None:
        self.name = name
        self.profile = profile
        self.journal = journal
        self._procs = procs

    async def run(self, *args: str, within: float = COMMAND_TIMEOUT) -> Outcome:
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *TIDINGS,
            *args,
            "--profile",
            str(self.profile),
            "--json",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._procs.add(proc)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), within)
            code: int | None = proc.returncode
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            code = None
        finally:
            self._procs.discard(proc)
        data: Any = None
        if code == 0:
            data = json.loads(out.decode())
        outcome = Outcome(args, code, data, err.decode(errors="replace").strip(), 0.0)
        outcome.seconds = time.monotonic() - began
        shown = " ".join(a if len(a) < 40 else a[:37] + "..." for a in args)
        detail = ""
        if code == 0 and args[0] == "send":
            detail = f" -> {data['status']} {data['id']}"
        elif code != 0:
            detail = f" -> exit {code}: {outcome.err[-300:]}"
        self.journal.note(f"{self.name}: {shown} ({outcome.seconds:.1f}s){detail}")
        return outcome

    async def ok(self, *args: str) -> Any:
        outcome = await self.run(*args)
        assert outcome.ok, f"{self.name}: {args} failed with {outcome.code}: {outcome.err}"
        return outcome.out

    async def history(self, chat: str) -> list[dict[str, Any]]:
        page = await self.ok("history", chat, "--limit", "1000")
        assert page["before"] is None, "more than one page of history"
        return [m for m in page["messages"] if m["kind"] == "text"]


def chat_of(sender: str, chat: str) -> str:
    """A conversation's name independent of who looks at it: "alice+bob" or "#<id>"."""
    if chat.startswith("#"):
        return chat
    return "+".join(sorted((sender, chat[1:])))


def chat_for(person: str, conv: str) -> str:
    """How ``person`` names conversation ``conv`` on the command line."""
    if conv.startswith("#"):
        return conv
    (other,) = set(conv.split("+")) - {person}
    return f"@{other}"


def members_of(conv: str) -> tuple[str, ...]:
    return PEOPLE if conv.startswith("#") else tuple(conv.split("+"))


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_chat_over_a_faulty_link_with_a_server_crash(server: Any, tmp_path: Path) -> None:
    journal = Journal()
    journal.note(f"seed {SEED}; server {server.url}; data {server.data_dir}")
    procs: set[Any] = set()
    proxy = FaultProxy(server.port, seed=SEED, profile=SETUP_FAULTS)
    await proxy.start()
    people = {n: Person(n, tmp_path / n, journal, procs) for n in PEOPLE}
    sends: list[Sent] = []
    try:
        await _chaos(server, proxy, people, sends, journal)
    except BaseException:
        print(f"\n=== chaos seed {SEED} (rerun: TIDINGS_CHAOS_SEED={SEED}) ===")
        print(f"proxy counters: {proxy.counters.as_dict()}")
        print(journal.dump())
        raise
    finally:
        for proc in list(procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()
        await proxy.stop()
    print(f"\n=== chaos seed {SEED}: {len(sends)} sends; proxy {proxy.counters.as_dict()} ===")
    print(journal.dump())


async def _chaos(
    server: Any,
    proxy: Any,
    people: dict[str, Person],
    sends: list[Sent],
    journal: Journal,
) -> None:
    alice, bob, carol = (people[n] for n in PEOPLE)

    # ---- set up through the (mildly) faulty link: accounts, direct chats, the group
    await asyncio.gather(
        *(p.ok("account", "create", "--server", proxy.url, p.name) for p in people.values())
    )
    group = await alice.ok("group", "create", "chaos", "@bob", "@carol")
    gid = f"#{group['id']}"
    convs = ["alice+bob", "alice+carol", "bob+carol", gid]

    async def send(sent: Sent, wait: str) -> None:
        sends.append(sent)
        within = sent.kill_after if sent.kill_after is not None else COMMAND_TIMEOUT
        sent.outcome = await people[sent.sender].run(
            "send", sent.chat, sent.body, "--wait", wait, within=within
        )

    # Everyone opens their chats (a `send @user` the first time asks the server for the chat;
    # later ones find it in the profile), in a fixed order so each direct chat is opened once.
    for sender, chat in (("alice", "@bob"), ("alice", "@carol"), ("bob", "@carol")):
        await send(Sent(sender, chat, f"{sender} opens {chat}"), "20")
        assert sends[-1].outcome is not None and sends[-1].outcome.ok
    await asyncio.gather(*(p.ok("sync") for p in people.values()))
    for sender, chat in (("bob", "@alice"), ("carol", "@alice"), ("carol", "@bob")):
        await send(Sent(sender, chat, f"{sender} answers in {chat}"), "20")
    for name in PEOPLE:
        await send(Sent(name, gid, f"{name} says hi in the group"), "20")
    assert all(s.outcome is not None and s.outcome.ok for s in sends), "setup sends failed"
    await asyncio.gather(*(p.ok("sync") for p in people.values()))
    for person in (bob, carol):
        assert (await person.ok("group", "info", gid))["title"] == "chaos"

    # ---- chaos: everyone sends at once over a failing link; the server dies in the middle
    proxy.set_profile(CHAOS_FAULTS)
    journal.note(f"chaos on: {CHAOS_FAULTS}")
    finished = 0
    halfway = asyncio.Event()
    deadline = time.monotonic() + CHAOS_WITHIN

    async def chatter(person: Person) -> None:
        nonlocal finished
        rng = random.Random(f"{SEED}:{person.name}")
        chats = [f"@{n}" for n in PEOPLE if n != person.name] + [gid]
        for i in range(ROUNDS):
            if time.monotonic() > deadline:
                journal.note(f"{person.name}: chaos phase out of time after {i} messages")
                return
            chat = rng.choice(chats)
            kill_after = rng.uniform(0.2, 1.0) if rng.random() < KILL_SEND else None
            body = f"{person.name} {i:02d} in {chat}"
            await send(Sent(person.name, chat, body, kill_after), "2")
            finished += 1
            if finished >= KILL_AFTER:
                halfway.set()
            if rng.random() < 0.3:
                await person.run("sync", "--timeout", "4")

    async def crash() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(halfway.wait(), CHAOS_WITHIN)
        journal.note(f"SIGKILL server pid {server.pid}")
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(DOWN_FOR)
        await asyncio.to_thread(server.start)
        journal.note(f"server restarted, pid {server.pid}")

    await asyncio.gather(crash(), *(chatter(p) for p in people.values()))

    # ---- heal, then sync until everything has arrived (bounded)
    proxy.heal()
    cut = proxy.cut_all()
    journal.note(f"healed (cut {cut} open connections); proxy {proxy.counters.as_dict()}")

    # A send the CLI could not finish may still have stored the message: the sender's own
    # history says. Whatever is stored must be delivered; what is not was never sent.
    unclear = [s for s in sends if s.message_id is None]
    stored_status = Counter(s.outcome.out["status"] for s in sends if s.message_id is not None)
    journal.note(f"sends: {dict(stored_status)} stored, {len(unclear)} without an answer")

    heal_deadline = time.monotonic() + HEAL_WITHIN
    histories: dict[tuple[str, str], list[dict[str, Any]]] = {}
    while True:
        syncs = await asyncio.gather(*(p.run("sync", "--timeout", "10") for p in people.values()))
        histories = {}
        for conv in convs:
            for name in members_of(conv):
                histories[name, conv] = await people[name].history(chat_for(name, conv))
        expected = _expected(sends, histories)
        problems = _check(expected, histories, convs)
        if not problems and all(s.ok for s in syncs):
            break
        if time.monotonic() > heal_deadline:
            break
        journal.note(f"not settled yet: {problems[:3]}")

    expected = _expected(sends, histories)
    total = sum(len(v) for v in expected.values())
    kept = sum(1 for v in expected.values() for sent in v if sent.message_id is None)
    journal.note(
        f"{total} messages expected; of {len(unclear)} sends without an answer from the CLI"
        f" (killed or failed), {kept} had stored their message"
    )
    problems = _check(expected, histories, convs)
    assert not problems, "after healing:\n" + "\n".join(problems)
    # Every send the CLI answered is stored (and so delivered); the ones it did not answer must
    # not have crashed it.
    for sent in sends:
        assert sent.outcome is not None
        if sent.kill_after is None:
            assert sent.outcome.code is not None, f"`tidings send` hung: {sent}"
            assert sent.outcome.code in (0, 1, 3), f"`tidings send` crashed: {sent.outcome}"
    assert len(sends) == 9 + ROUNDS * len(PEOPLE) or time.monotonic() > deadline
    assert proxy.counters.cuts + proxy.counters.stall_cuts + proxy.counters.lifetime_cuts > 0
    assert proxy.counters.upstream_failed > 0  # some connections tried while the server was down


def _expected(
    sends: list[Sent], histories: dict[tuple[str, str], list[dict[str, Any]]]
) -> dict[tuple[str, str], list[Sent]]:
    """Per (sender, conversation): the messages that must arrive, in the order sent. A send the
    CLI answered stored its message; one it did not counts when the sender's history has it."""
    expected: dict[tuple[str, str], list[Sent]] = defaultdict(list)
    for sent in sends:
        conv = chat_of(sent.sender, sent.chat)
        if sent.message_id is None:
            own = histories.get((sent.sender, conv), [])
            if not any(m["body"] == sent.body and m["is_own"] for m in own):
                continue
        expected[sent.sender, conv].append(sent)
    return expected


def _check(
    expected: dict[tuple[str, str], list[Sent]],
    histories: dict[tuple[str, str], list[dict[str, Any]]],
    convs: list[str],
) -> list[str]:
    """Everything wrong with the histories; empty when all is delivered exactly once, in order."""
    problems: list[str] = []
    for conv in convs:
        seqs: dict[str, tuple[int | None, ...]] = {}
        for name in members_of(conv):
            history = histories[name, conv]
            seq_list = [m["seq"] for m in history]
            seqs[name] = tuple(seq_list)
            if (
                None in seq_list
                or seq_list != sorted(seq_list)
                or len(set(seq_list)) < len(seq_list)
            ):
                problems.append(f"{name} in {conv}: seqs not strictly increasing: {seq_list}")
            ids = Counter(m["id"] for m in history)
            for message_id, count in ids.items():
                if count > 1:
                    problems.append(f"{name} in {conv}: message {message_id} appears {count}x")
            for sender in members_of(conv):
                want = [s.body for s in expected.get((sender, conv), [])]
                mine = [m for m in history if m["sender_name"] == sender]
                got = [m["body"] for m in mine]
                if got != want:
                    missing = [b for b in want if b not in got]
                    extra = [b for b in got if got.count(b) > 1 or b not in want]
                    problems.append(
                        f"{name} in {conv}, from {sender}: got {len(got)} of {len(want)};"
                        f" missing {missing}; extra {extra}; order {got}"
                    )
                for sent in expected.get((sender, conv), []):
                    found = [m for m in mine if m["body"] == sent.body]
                    if sent.message_id is not None and any(
                        m["id"] != sent.message_id for m in found
                    ):
                        problems.append(f"{name} in {conv}: {sent.body!r} has another id")
                    if name == sender and found and found[0]["status"] not in DONE:
                        problems.append(
                            f"{sender}'s own {sent.body!r} in {conv} is {found[0]['status']}"
                        )
        reference = {(m["seq"], m["id"]) for m in histories[members_of(conv)[0], conv] if m["seq"]}
        for name in members_of(conv)[1:]:
            other = {(m["seq"], m["id"]) for m in histories[name, conv] if m["seq"]}
            if other != reference:
                problems.append(f"{conv}: {name}'s seqs differ from {members_of(conv)[0]}'s")
    return problems
