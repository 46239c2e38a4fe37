"""Turns one benchmark run into ``bench/results/<timestamp>.json`` and ``bench/results/latest.md``.

The JSON holds everything measured (and each part's error, if it failed); the Markdown shows the
headline figures beside their aims (✔/✘), the ratios, the machine, each part's details, the
profile of the server under load and one line per earlier run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"

Json = dict[str, Any]


# --------------------------------------------------------------------------- the machine


def machine_info() -> Json:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=RESULTS_DIR.parent,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "no commit"


# --------------------------------------------------------------------------- profiles


def summarize_profile(collapsed: Path, top: int = 12) -> Json:
    """Top frames of a py-spy ``--format raw`` (collapsed stacks) file: by self time (the
    frame on top of the stack) and by inclusive time, both in % of samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    if total == 0:
        return {"samples": 0, "self": [], "inclusive": []}

    def pct(counter: Counter[str], only_ours: bool) -> list[list[Any]]:
        rows = [
            [frame, round(100 * n / total, 1)]
            for frame, n in counter.most_common()
            if not only_ours or "tidings" in frame
        ]
        return rows[:top]

    return {
        "samples": total,
        "self": pct(own, only_ours=False),
        "inclusive": pct(inclusive, only_ours=True),
    }


def _short(frame: str) -> str:
    """``func (/…/site-packages/pkg/module.py:12)`` → ``func (pkg/module.py)``: one row per
    function, whatever line the sample was on."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figure:
    label: str
    measured: str
    aim: str
    ok: bool | None

    @property
    def mark(self) -> str:
        return "-" if self.ok is None else ("✔" if self.ok else "✘")


def _data(results: Json, part: str) -> Json | None:
    entry = results.get("parts", {}).get(part)
    if not entry or not entry.get("ok"):
        return None
    data = entry.get("data")
    return data if isinstance(data, dict) else None


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int | float) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _cpu_per_msg(load: Json | None) -> float | None:
    """Server CPU microseconds per message: what the server would need per message on a core
    of its own, whatever share of the (shared) cores it got during the run."""
    if not load or not load.get("server_cpu_pct") or not load.get("msgs_per_s"):
        return None
    return float(load["server_cpu_pct"]) * 1e4 / float(load["msgs_per_s"])


def figures(results: Json) -> list[Figure]:
    """The headline figures of a run, each beside its aim."""
    rows: list[Figure] = []
    relay = _data(results, "relay")
    one = _data(results, "tidings_1to1")
    prosody = _data(results, "prosody")
    synapse = _data(results, "synapse")
    load = one.get("load") if one else None
    seq = one.get("sequential") if one else None
    relay_rate = relay.get("msgs_per_s") if relay else None
    rate = load.get("msgs_per_s") if load else None

    rows.append(Figure("Relay ceiling, msgs/s", _num(relay_rate), "(ceiling)", None))
    rows.append(
        Figure(
            "Tidings 1:1 (E2EE-shaped), msgs/s",
            _num(rate),
            "≥ 20,000",
            None if rate is None else rate >= 2e4,
        )
    )
    if rate is not None and relay_rate:
        share = 100 * rate / relay_rate
        rows.append(Figure("Tidings 1:1 / relay", f"{share:.0f}%", "≥ 40%", share >= 40))
    else:
        rows.append(Figure("Tidings 1:1 / relay", "n/a", "≥ 40%", None))
    plain = one.get("plaintext") if one else None
    if isinstance(plain, dict) and plain.get("msgs_per_s"):
        plain_cost = _cpu_per_msg(plain)
        rows.append(
            Figure(
                "Tidings 1:1 plaintext-shaped (old shape), msgs/s · server µs/msg",
                f"{_num(plain['msgs_per_s'])} · "
                + ("n/a" if plain_cost is None else f"{plain_cost:.0f} µs"),
                "(reference)",
                None,
            )
        )
    p_rate = prosody.get("msgs_per_s") if prosody else None
    if rate is not None and p_rate:
        rows.append(
            Figure("Tidings 1:1 / Prosody+MAM", f"{rate / p_rate:.1f}x", "≥ 5x", rate / p_rate >= 5)
        )
    else:
        rows.append(Figure("Tidings 1:1 / Prosody+MAM", "n/a", "≥ 5x", None))
    s_rate = synapse.get("msgs_per_s") if synapse else None
    ratio = f"{rate / s_rate:.0f}x" if rate is not None and s_rate else "n/a"
    rows.append(Figure("Tidings 1:1 / Synapse", ratio, "(reference)", None))
    cost = _cpu_per_msg(load)
    relay_cost = _cpu_per_msg(relay)
    if cost is not None:
        vs = f" vs relay {relay_cost:.0f} µs ({cost / relay_cost:.1f}x)" if relay_cost else ""
        rows.append(
            Figure(
                "Server CPU per 1:1 message (any CPU share)",
                f"{cost:.0f} µs{vs}",
                "≤ 50 µs (20k/s on one core)",
                cost <= 50,
            )
        )
        rows.append(
            Figure(
                "Tidings 1:1 projected on one dedicated core",
                f"{1e6 / cost:,.0f} msgs/s",
                "≥ 20,000",
                1e6 / cost >= 2e4,
            )
        )
    p_cost = _cpu_per_msg(prosody)
    if cost is not None and p_cost is not None:
        rows.append(
            Figure(
                "Server CPU per message: Prosody / Tidings",
                f"{p_cost / cost:.1f}x",
                "(reported)",
                None,
            )
        )
    if load:
        rows.append(
            Figure(
                "1:1 under load, latency p50 / p99",
                f"{_num(load.get('p50_ms'), 2)} / {_num(load.get('p99_ms'), 2)} ms",
                "(reported)",
                None,
            )
        )
    seq_p50 = seq.get("p50_ms") if seq else None
    rows.append(
        Figure(
            "Sequential send→deliver p50",
            f"{_num(seq_p50, 3)} ms",
            "≤ 0.5 ms",
            None if seq_p50 is None else seq_p50 <= 0.5,
        )
    )
    fan = _data(results, "group_fanout")
    fan_p99 = fan.get("p99_ms") if fan else None
    members = fan.get("members", 1000) if fan else 1000
    rows.append(
        Figure(
            f"{members:,}-member fan-out p50 / p99",
            f"{_num(fan.get('p50_ms') if fan else None)} / {_num(fan_p99)} ms",
            "p99 ≤ 100 ms",
            None if fan_p99 is None else fan_p99 <= 100,
        )
    )
    receipts_p99 = fan.get("receipts_p99_ms") if fan else None
    rows.append(
        Figure(
            f"{members:,}-member fan-out: poster has every receipt, p50 / p99",
            f"{_num(fan.get('receipts_p50_ms') if fan else None)} / {_num(receipts_p99)} ms",
            "p99 ≤ 300 ms",
            None if receipts_p99 is None else receipts_p99 <= 300,
        )
    )
    conns = _data(results, "connections")
    steps = conns.get("steps", []) if conns else []
    if steps:
        last = steps[-1]
        n = last["connections"]
        kib = last["per_conn_kib"]
        full = n >= 50_000
        limit = conns.get("server_open_files_limit") if conns else None
        capped = f" (server RLIMIT_NOFILE {limit:,})" if limit and limit < 50_000 else ""
        rows.append(
            Figure(
                f"Idle connections held (of {conns['target']:,} aimed)" if conns else "",
                f"{n:,}{capped}",
                "50,000",
                n >= 50_000 if not results.get("quick") else None,
            )
        )
        rows.append(
            Figure(
                f"Server memory per idle connection at {n:,}",
                f"{kib:.1f} KiB",
                "≤ 16 KiB" + ("" if full else " (at 50k)"),
                kib <= 16,
            )
        )
        rows.append(
            Figure(
                f"Server idle CPU at {n:,} connections",
                f"{last['idle_cpu_pct']:.1f}% of a core",
                "(reported)",
                None,
            )
        )
    else:
        rows.append(Figure("Idle connections / memory each", "n/a", "50k at ≤ 20 KiB", None))
    rows += _channel_figures(_data(results, "channels"))
    store = _data(results, "client_store")
    sizes = store.get("sizes", []) if store else []
    if sizes:
        big = sizes[-1]
        n = big["messages"]
        at = f"at {n:,} msgs"
        full = n >= 1_000_000
        rows.append(
            Figure(
                "Client store insert rate",
                f"{_num(big['insert_per_s'])} msgs/s",
                "(reported)",
                None,
            )
        )
        for what, key, limit in (("page of 50", "page", 2.0), ("FTS5 search", "fts", 20.0)):
            p50, p99 = big[f"{key}_ms_p50"], big[f"{key}_ms_p99"]
            rows.append(
                Figure(
                    f"Client {what} p50 / p99, {at}",
                    f"{p50:.2f} / {p99:.2f} ms",
                    f"p50 ≤ {limit:g} ms" + ("" if full else " (at 1M)"),
                    p50 <= limit,
                )
            )
    else:
        rows.append(Figure("Client store page / FTS5", "n/a", "≤ 2 ms / ≤ 20 ms at 1M", None))
    rows += _client_send_figures(_data(results, "client_send"))
    rows += _media_figures(_data(results, "media"))
    crypto = _data(results, "crypto")
    for row in crypto.get("rows", []) if crypto else []:
        if isinstance(row, dict) and "one-way" in str(row.get("workload")) and row.get("ratio"):
            rows.append(
                Figure(
                    f"Crypto {row['workload']}: tidings / libsignal",
                    f"{row['ratio']:.2f}x",
                    "(reported)",
                    None,
                )
            )
            break
    return rows


#: aims of the client part: a bot's texts per second until all are sent, and opening a
#: profile of a million messages to its chat list
CLIENT_SEND_AIM = 5_000
CHAT_LIST_AIM_MS = 200.0


def _client_send_figures(data: Json | None) -> list[Figure]:
    send = (data or {}).get("send") or {}
    chat = (data or {}).get("chat_list") or {}
    rows: list[Figure] = []
    if send.get("batched") and send.get("run"):
        batched, loop = send["batched"], send["run"]
        rate = float(batched["msgs_per_s"])
        rows.append(
            Figure(
                f"Client bot sender, send_texts ({send.get('batch')} per call): E2EE msgs/s"
                " until sent",
                f"{_num(rate)} msgs/s ({batched['client_cpu_us_per_msg']} µs client CPU each)",
                f"≥ {CLIENT_SEND_AIM:,}",
                rate >= CLIENT_SEND_AIM,
            )
        )
        rows.append(
            Figure(
                "Client bot sender, send_text in a loop",
                f"{_num(loop['msgs_per_s'])} msgs/s ({loop['client_cpu_us_per_msg']} µs client"
                " CPU each)",
                "(reported)",
                None,
            )
        )
    else:
        rows.append(Figure("Client bot sender", "n/a", f"≥ {CLIENT_SEND_AIM:,} msgs/s", None))
    if chat.get("open_to_chat_list_ms") is not None:
        ms, n = float(chat["open_to_chat_list_ms"]), int(chat["messages"])
        full = n >= 1_000_000
        rows.append(
            Figure(
                f"Client open to chat list, {n:,} msgs in {chat['conversations']} chats",
                f"{ms:.1f} ms",
                f"≤ {CHAT_LIST_AIM_MS:g} ms" + ("" if full else " (at 1M)"),
                ms <= CHAT_LIST_AIM_MS,
            )
        )
    else:
        rows.append(Figure("Client open to chat list", "n/a", "≤ 200 ms at 1M", None))
    return rows


def _describe_client_send(data: Json) -> list[str]:
    out: list[str] = []
    send = data.get("send") or {}
    runs = [
        ("send_text in a loop", send.get("run")),
        (f"send_texts, {send.get('batch')} per call", send.get("batched")),
        ("send_texts under py-spy", send.get("profiled_run")),
    ]
    out += _table(
        [
            "Burst",
            "Msgs",
            "Msgs/s until sent",
            "Stored/s",
            "Client CPU µs/msg",
            "Server CPU µs/msg",
        ],
        [
            [
                name,
                f"{r['messages']:,}",
                _num(r["msgs_per_s"]),
                _num(r["stored_per_s"]),
                r["client_cpu_us_per_msg"],
                r.get("server_cpu_us_per_msg") or "n/a",
            ]
            for name, r in runs
            if r
        ],
    )
    if send.get("peer_catch_up_msgs_per_s"):
        out += ["", f"The peer then caught up at {_num(send['peer_catch_up_msgs_per_s'])} msgs/s."]
    if send.get("note"):
        out += ["", str(send["note"])]
    out += _profile(send.get("profile"), "Client profile while sending")
    chat = data.get("chat_list") or {}
    if chat:
        out += [""]
        out += _table(
            ["Messages", "Chats", "Open to chat list ms (median)", "Each open ms", "DB MiB"],
            [
                [
                    f"{chat['messages']:,}",
                    chat["conversations"],
                    chat["open_to_chat_list_ms"],
                    ", ".join(str(t) for t in chat.get("open_to_chat_list_ms_all", [])),
                    chat.get("db_mib"),
                ]
            ],
        )
        if chat.get("note"):
            out += ["", str(chat["note"])]
    return out


def _media_figures(media: Json | None) -> list[Figure]:
    """The media part's headline rows: photo preparation time and size, transfer rates."""
    if not media:
        return [Figure("12 MP photo \u2192 1280 px JPEG + BlurHash p50", "n/a", "≤ 150 ms", None)]
    p50, ratio = media.get("photo_prepare_ms_p50"), media.get("photo_out_ratio_pct")
    rows = [
        Figure(
            "12 MP photo \u2192 1280 px JPEG + BlurHash p50",
            f"{_num(p50)} ms",
            "≤ 150 ms",
            None if p50 is None else p50 <= 150,
        ),
        Figure(
            "Prepared photo / original bytes",
            f"{ratio} %",
            "≤ 5 %",
            None if ratio is None else ratio <= 5,
        ),
    ]
    for key, name in (("local", "local store"), ("s3_moto", "S3 (moto)")):
        rates = media.get(key) or {}
        if "encrypt_upload_mib_s" in rates:
            rows.append(
                Figure(
                    f"{media.get('transfer_mib', 50)} MiB up / down, {name}",
                    f"{rates['encrypt_upload_mib_s']} / {rates['download_decrypt_mib_s']} MiB/s",
                    "(reported)",
                    None,
                )
            )
    rows.append(
        Figure(
            "Encoding 60 s of voice",
            f"{_num(media.get('voice_60s_encode_s'), 2)} s",
            "(reported)",
            None,
        )
    )
    return rows


# --------------------------------------------------------------------------- markdown


#: The channel part's runs, in the order they are shown.
_CHANNEL_MODES = (("embedded", "in-process queue"), ("nats", "NATS JetStream"))
#: Goal: one post to every subscriber is durable and queued within this many milliseconds.
CHANNEL_QUEUED_AIM_MS = 2000.0


def _channel_figures(data: Json | None) -> list[Figure]:
    """One post to a channel's subscribers, per queue: durable and queued beside its aim."""
    rows: list[Figure] = []
    for mode, label in _CHANNEL_MODES:
        run = data.get(mode) if data else None
        if not isinstance(run, dict):
            rows.append(Figure(f"Channel post durable and queued ({label})", "n/a", "≤ 2 s", None))
            continue
        ms = run.get("accepted_ms")
        rows.append(
            Figure(
                f"Channel post to {run.get('subscribers', 0):,} subscribers durable and "
                f"queued ({label})",
                f"{_num(ms)} ms",
                "≤ 2 s",
                None if ms is None else ms <= CHANNEL_QUEUED_AIM_MS,
            )
        )
        rows.append(
            Figure(
                f"… every one of {run.get('online', 0):,} online subscribers has it, "
                "p50 / p99 / all",
                f"{_num(run.get('p50_ms'))} / {_num(run.get('p99_ms'))} / "
                f"{_num(run.get('all_online_ms'))} ms",
                "(reported)",
                None,
            )
        )
    return rows


def _describe_channels(data: Json) -> list[str]:
    rows = []
    for mode, label in _CHANNEL_MODES:
        run = data.get(mode)
        if not isinstance(run, dict):
            continue
        queued = run.get("accepted_ms")
        mark = "" if queued is None else (" ✔" if queued <= CHANNEL_QUEUED_AIM_MS else " ✘")
        rows.append(
            [
                label,
                f"{run.get('subscribers', 0):,} / {run.get('online', 0):,}",
                f"{_num(queued)} ms{mark}",
                f"{run.get('received', 0):,} of {run.get('online', 0):,}",
                f"{_num(run.get('p50_ms'))} / {_num(run.get('p99_ms'))} / "
                f"{_num(run.get('all_online_ms'))}",
                _num(run.get("server_fanout_cpu_ms")),
                f"{_num(run.get('catch_up_p50_ms'))} / {_num(run.get('catch_up_p99_ms'))} "
                f"({run.get('catch_up_sample', 0) - run.get('catch_up_failed', 0)} of "
                f"{run.get('catch_up_sample', 0)})",
                f"{_num(run.get('rss_start_mb'))} / {_num(run.get('rss_online_mb'))} / "
                f"{_num(run.get('rss_after_mb'))}",
                f"{_num(run.get('bytes_per_online'))} B",
                f"{_num(run.get('bytes_per_subscriber'))} B "
                f"({_num(run.get('post_bytes_per_subscriber'))} B)",
                f"{_num((run.get('setup_s') or {}).get('connect'))} / "
                f"{_num((run.get('setup_s') or {}).get('settle'))}",
            ]
        )
    if not rows:
        return []
    out = _table(
        [
            "Queue",
            "Subscribers / online",
            "Durable + queued (aim ≤ 2,000 ms)",
            "Online that got it",
            "Online has it p50 / p99 / all ms",
            "Server CPU for the fan-out ms",
            "Offline catch-up p50 / p99 ms",
            "Server RSS MiB: start / online / after",
            "RSS per online conn",
            "RSS per subscriber (the post's share)",
            "Connect / settle s",
        ],
        rows,
    )
    first = next(data[m] for m, _ in _CHANNEL_MODES if isinstance(data.get(m), dict))
    out += [
        "",
        f"One post (a stand-in signature) to a public channel. The subscribers were stored "
        f"before the server started (in {_num(data.get('seed_s'))} s, through the SQLite "
        f"store's own methods); the online ones are raw protocol connections held by "
        f"{first.get('load_processes', 2)} load processes (capped by the server's "
        f"RLIMIT_NOFILE {first.get('server_open_files_limit', 0):,}), the rest offline; the "
        "post goes out once the server is idle after the connects (settle: with NATS every "
        "connect also puts a presence key that the node's watch then reads). "
        "Durable + queued: until the POST is answered (the post fsynced in the log and handed "
        "to the in-process pump, or acknowledged by the JetStream stream). Online has it: from "
        "the POST until each load process decoded the frame (their decoding shares the cores "
        "with the server). Offline catch-up: a sample of offline subscribers doing what the "
        "client does after a connect (Hello → Synced, the channel list, the newest page), 20 "
        "at a time. RSS per subscriber: the server's RSS after the post over all subscribers; "
        "in brackets what the post added (its cached subscriber list).",
    ]
    return out


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def history_line(results: Json) -> str:
    """One line summing up a run, for the history of later reports."""
    by_label = {f.label: f for f in figures(results)}
    picks = [
        ("relay", "Relay ceiling, msgs/s"),
        ("1:1", "Tidings 1:1 (E2EE-shaped), msgs/s"),
        ("1:1", "Tidings 1:1, msgs/s"),
        ("of relay", "Tidings 1:1 / relay"),
        ("xProsody", "Tidings 1:1 / Prosody+MAM"),
        ("seq p50", "Sequential send→deliver p50"),
    ]
    bits = [f"{name} {by_label[label].measured}" for name, label in picks if label in by_label]
    bits = [b for b in bits if "n/a" not in b]
    for f in figures(results):
        if "fan-out" in f.label:
            if "receipt" in f.label:
                if "n/a" not in f.measured:
                    bits.append(f"receipts {f.measured}")
            elif "n/a" not in f.measured:
                bits.append(f"fan-out {f.measured}")
        elif "per idle connection" in f.label:
            bits.append(f"{f.label.rsplit(' ', 1)[-1]} conns {f.measured} each")
        elif ("page of 50" in f.label or "FTS5" in f.label) and "n/a" not in f.measured:
            bits.append(f"{f.label.split(' p50')[0].replace('Client ', '')} {f.measured}")
    failed = [k for k, v in results.get("parts", {}).items() if not v.get("ok")]
    if failed:
        bits.append("failed: " + ", ".join(failed))
    kind = "quick" if results.get("quick") else "full"
    return f"- {results.get('timestamp', '?')} ({kind}, {results.get('git', '?')}): " + " · ".join(
        bits
    )


def render(results: Json, history: list[Json], carried: Sequence[str] = ()) -> str:
    m = results.get("machine", {})
    kind = "quick (`make bench-quick`)" if results.get("quick") else "full (`make bench`)"
    lines = [
        "# Tidings benchmark — latest run",
        "",
        f"{results.get('timestamp')} · {kind} · revision {results.get('git')} · "
        f"took {results.get('seconds', 0):.0f} s",
        "",
        f"Machine: {m.get('cores')} cores, {m.get('cpu_model')}, {m.get('memory_gib')} GiB, "
        f"Python {m.get('python')}, Linux {m.get('kernel')}; load average at start "
        f"{m.get('load_average')}. Server, load generator and peers share these cores: "
        "absolute figures are noisy, ratios within one run are what counts.",
        "",
        "## Headline figures",
        "",
    ]
    lines += _table(
        ["Figure", "Measured", "Aim", ""],
        [[f.label, f.measured, f.aim, f.mark] for f in figures(results)],
    )
    lines += ["", "## Parts", ""]
    for name, entry in results.get("parts", {}).items():
        took = f"{entry.get('seconds', 0):.0f} s"
        if entry.get("ok"):
            lines += [f"### {name} ({took})", ""]
            lines += _describe(name, entry.get("data") or {})
        else:
            lines += [f"### {name} — FAILED ({took})", "", "```", str(entry.get("error")), "```"]
        lines.append("")
    lines += ["## Earlier runs", ""]
    # Lines of the previous latest.md whose JSON is not here (only latest.md is tracked),
    # then the local runs; in time order.
    fresh = [history_line(h) for h in history]
    stamps = {line.split(" ", 2)[1] for line in fresh}
    merged = [line for line in carried if line.split(" ", 2)[1] not in stamps] + fresh
    lines += sorted(merged, key=lambda line: line.split(" ", 2)[1]) or ["(none)"]
    lines.append("")
    return "\n".join(lines)


def _load_row(name: str, load: Json) -> list[Any]:
    return [
        name,
        _num(load.get("msgs_per_s")),
        _num(load.get("p50_ms"), 2),
        _num(load.get("p99_ms"), 2),
        f"{load.get('pairs')}x{load.get('window')}",
        load.get("processes"),
        ", ".join(f"{x:.0f}%" for x in load.get("loadgen_cpu_pct", [])),
        _num(load.get("server_cpu_pct")),
        _num(_cpu_per_msg(load), 0),
    ]


_LOAD_HEADER = [
    "Run",
    "msgs/s",
    "p50 ms",
    "p99 ms",
    "pairsxwindow",
    "load procs",
    "load CPU",
    "server CPU %",
    "server CPU µs/msg",
]


#: The two durability rows of the 1:1 table: ``sqlite_synchronous`` and its label.
_DURABILITY_ROWS = (
    ("full", "sqlite synchronous=FULL (default)"),
    ("normal", "sqlite synchronous=NORMAL"),
)
_DURABILITY_NOTE = (
    'Durability: the same load against a fresh server with `sqlite_synchronous = "full"` '
    "(the default: the WAL is fsynced before every Accepted, one fsync per group commit) and "
    'with `"normal"` (fsync at checkpoints only: may lose the last second of accepted '
    "messages on power loss), back to back."
)


def _describe(name: str, data: Json) -> list[str]:
    out: list[str] = []
    if name == "relay":
        rows = [_load_row("relay", data)]
        rows += [_load_row(f"run: {p['processes']} load procs", p) for p in data.get("probe", [])]
        out += _table(_LOAD_HEADER, rows)
    elif name == "multinode":
        rows = [_load_row(k.replace("_", " "), v) for k, v in data.items() if isinstance(v, dict)]
        out += _table(_LOAD_HEADER, rows)
    elif name == "tidings_1to1":
        rows = [_load_row(k, data[k]) for k in ("load", "sequential") if k in data]
        probes = data.get("load", {}).get("probe", [])
        rows += [_load_row(f"run: {p['processes']} load procs", p) for p in probes]
        durability = data.get("durability") or {}
        rows += [
            _load_row(label, durability[mode])
            for mode, label in _DURABILITY_ROWS
            if isinstance(durability.get(mode), dict)
        ]
        if isinstance(data.get("plaintext"), dict):
            rows.append(_load_row("plaintext shape (reference)", data["plaintext"]))
        out += _table(_LOAD_HEADER, rows)
        if durability:
            out += ["", _DURABILITY_NOTE]
        if data.get("note"):
            out += ["", str(data["note"])]
        errors = [e for k in ("load", "sequential") for e in data.get(k, {}).get("errors", [])]
        if errors:
            out += ["", f"Errors: {errors[:5]}"]
        out += _profile(data.get("profile"), "Server profile under load")
    elif name == "channels":
        out += _describe_channels(data)
    elif name == "group_fanout":
        out += [
            f"{data.get('members'):,} members online from one load process, "
            f"{data.get('posts')} posts: p50 {_num(data.get('p50_ms'))} ms, "
            f"p99 {_num(data.get('p99_ms'))} ms, max {_num(data.get('max_ms'))} ms. "
            f"Load process CPU per post (decoding {data.get('members'):,} frames): "
            f"{_num(data.get('loadgen_cpu_ms_per_post'))} ms — part of every figure. "
            f"Server CPU per post (delivery to {data.get('recipients', 999):,}, their acks and "
            f"the receipts): {_num(data.get('server_cpu_ms_per_post'))} ms. "
            f"Until the poster holds every member's delivery receipt: p50 "
            f"{_num(data.get('receipts_p50_ms'))} ms, p99 {_num(data.get('receipts_p99_ms'))} ms.",
        ]
        if data.get("errors"):
            out += ["", f"Errors: {data['errors']}"]
        out += _profile(data.get("profile"), "Server profile while the posts go out")
    elif name == "connections":
        out += [
            f"Baseline server RSS {data.get('baseline_rss_mib', 0):.1f} MiB; "
            f"{data.get('source_addresses')} loopback source addresses from "
            f"{data.get('load_processes', 2)} load processes; a Ping frame every 25 s per "
            f"connection; server RLIMIT_NOFILE {data.get('server_open_files_limit', '?'):,}.",
            "",
        ]
        out += _table(
            [
                "Connections",
                "Server RSS MiB",
                "KiB / conn",
                "Idle CPU % core",
                "Open s",
                "Retries / failed opens",
            ],
            [
                [
                    f"{s['connections']:,}",
                    f"{s['rss_mib']:.1f}",
                    f"{s['per_conn_kib']:.1f}",
                    f"{s['idle_cpu_pct']:.2f}",
                    f"{s['open_seconds']:.1f}",
                    f"{s.get('open_retries', 0)} / {s.get('open_failed', 0)}",
                ]
                for s in data.get("steps", [])
            ],
        )
        if data.get("stopped"):
            out += ["", f"Stopped early: {data['stopped']}"]
    elif name == "push":
        out += _table(
            ["Members", "Offline + registered", "All handed over p50/p99 ms", "Pushes/s"],
            [
                [
                    f"{data['members']:,}",
                    f"{data['offline_registered']:,}",
                    f"{data['all_handed_over_p50_ms']} / {data['all_handed_over_p99_ms']}",
                    f"{data['pushes_per_second']:,}",
                ]
            ],
        )
    elif name == "client_send":
        out += _describe_client_send(data)
    elif name == "client_store":
        out += _table(
            ["Messages", "Insert msgs/s", "Page p50/p99 ms", "FTS5 p50/p99 ms"],
            [
                [
                    f"{s['messages']:,}",
                    _num(s["insert_per_s"]),
                    f"{s['page_ms_p50']:.2f} / {s['page_ms_p99']:.2f}",
                    f"{s['fts_ms_p50']:.2f} / {s['fts_ms_p99']:.2f}",
                ]
                for s in data.get("sizes", [])
            ],
        )
        if data.get("note"):
            out += ["", str(data["note"])]
    elif name == "backup":
        out += _table(
            ["Messages", "Argon2id s", "Upload msgs/s", "Restore s", "Older page p50/max ms"],
            [
                [
                    f"{data.get('messages', 0):,}",
                    f"{data.get('argon2id_s')} ({data.get('argon2id_params')})",
                    _num(data.get("upload_msgs_per_s")),
                    _num(data.get("restore_s"), 2),
                    f"{data.get('older_page_ms_p50')} / {data.get('older_page_ms_max')}",
                ]
            ],
        )
        if data.get("note"):
            out += ["", str(data["note"])]
    elif name == "media":
        local, s3 = data.get("local") or {}, data.get("s3_moto") or {}
        out += _table(
            [
                "12 MP photo \u2192 1280 px p50 ms",
                "Out / in bytes",
                "50 MiB up / down MiB/s (local)",
                "(S3, moto)",
                "60 s voice encode s",
            ],
            [
                [
                    _num(data.get("photo_prepare_ms_p50"), 1),
                    f"{data.get('photo_out_bytes', 0):,} / {data.get('photo_in_bytes', 0):,}"
                    f" ({data.get('photo_out_ratio_pct')} %)",
                    f"{local.get('encrypt_upload_mib_s')} / {local.get('download_decrypt_mib_s')}",
                    f"{s3.get('encrypt_upload_mib_s')} / {s3.get('download_decrypt_mib_s')}",
                    _num(data.get("voice_60s_encode_s"), 3),
                ]
            ],
        )
        if data.get("note"):
            out += ["", str(data["note"])]
    elif name in ("prosody", "synapse"):
        out += _table(_LOAD_HEADER, [_load_row(f"{name} {data.get('version', '')}", data)])
        if data.get("note"):
            out += ["", str(data["note"])]
    elif name == "crypto":
        if data.get("markdown"):
            out += [str(data["markdown"])]
        else:
            out += _render_any(data)
    else:
        out += ["```json", json.dumps(data, indent=2)[:4000], "```"]
    return out


def _profile(profile: Json | None, title: str) -> list[str]:
    if not profile:
        return []
    if not profile.get("samples"):
        return ["", f"{title}: {profile.get('error', 'no samples')}"]
    out = ["", f"{title} (py-spy, {profile['samples']} samples):", ""]
    out += _table(["Top self frames", "% samples"], profile["self"])
    out += [""]
    out += _table(["Top inclusive frames in tidings", "% samples"], profile["inclusive"])
    return out


def _render_any(data: Any) -> list[str]:
    """A table for a list of flat dicts, key/value rows for a dict, JSON otherwise."""
    if isinstance(data, dict):
        for key in ("table", "rows", "results"):
            if isinstance(data.get(key), list):
                head = [
                    f"{k}: {v}"
                    for k, v in data.items()
                    if k != key and not isinstance(v, list | dict)
                ]
                return ([", ".join(head), ""] if head else []) + _render_any(data[key])
        if all(not isinstance(v, list | dict) for v in data.values()):
            return _table(["", ""], [[k, v] for k, v in data.items()])
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        header = list(dict.fromkeys(k for r in data for k in r))
        return _table(header, [[r.get(k, "") for k in header] for r in data])
    return ["```json", json.dumps(data, indent=2)[:4000], "```"]


def carried_history(md_path: Path) -> list[str]:
    """The history lines of an existing latest.md ("- <timestamp> (...): ...")."""
    try:
        text = md_path.read_text()
    except OSError:
        return []
    _, found, tail = text.partition("## Earlier runs")
    if not found:
        return []
    return [line for line in tail.splitlines() if line.startswith("- ") and line.count(" ") >= 2]


def write(results: Json, results_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write ``<timestamp>.json`` and ``latest.md``; earlier JSONs make up the history."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = str(results["timestamp"]).replace(":", "").replace("-", "")
    json_path = results_dir / f"{stamp}.json"
    history: list[Json] = []
    for path in sorted(results_dir.glob("*.json")):
        if path == json_path:
            continue
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        # other scripts (bench/delivery_1to1.py, …) write their own JSON here too
        if isinstance(earlier, dict) and "parts" in earlier:
            history.append(earlier)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path = results_dir / "latest.md"
    md_path.write_text(render(results, history, carried_history(md_path)))
    return json_path, md_path


def main() -> None:
    """``python -m bench.report``: render latest.md again from the newest run's JSON."""
    runs = []
    for path in sorted(RESULTS_DIR.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "parts" in data:
            runs.append(data)
    if not runs:
        raise SystemExit("no benchmark run in bench/results yet: python -m bench.run")
    _, md_path = write(runs[-1])
    print(md_path.read_text())


if __name__ == "__main__":
    main()
