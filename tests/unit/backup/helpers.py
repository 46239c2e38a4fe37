"""Shared builders for the backup tests: small Argon2id params through the real code path."""

from __future__ import annotations

from tidings.client.backup.pages import MessageRecord, Reaction
from tidings.crypto.vault import Enrolment, KdfLimits, enrol, new_kdf_params

FAST = KdfLimits(min_m_cost_kib=8 * 1024, min_t_cost=1)
PASS = "correct horse battery staple"
ACCOUNT = "acct-1"


def fast_enrol(account: str = ACCOUNT) -> Enrolment:
    return enrol(PASS, account, params=new_kdf_params(m_cost_kib=8 * 1024, t_cost=1), limits=FAST)


def message(conv: str, n: int, body: str = "hi", **fields: object) -> MessageRecord:
    base: dict[str, object] = {
        "id": f"m{n}",
        "conv_id": conv,
        "seq": n,
        "sender": "alice",
        "sender_device": 1,
        "ts": 1_700_000_000_000 + n,
        "kind": "text",
        "body": body,
        "status": "read",
        "reactions": [Reaction("bob", "👍", 1_700_000_000_500)],
        "attachment": None,
    }
    base.update(fields)
    return MessageRecord(**base)  # type: ignore[arg-type]
