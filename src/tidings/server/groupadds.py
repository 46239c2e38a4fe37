"""Consent and rate limits for adding accounts to groups.

Adding someone to a group puts the group, its members and their messages in front of them
without asking. Two things keep that from being abused:

* **consent**: an account whose setting ``group_adds`` is ``contacts`` can be added only by
  its contacts, the accounts it shares a direct conversation with in which it has sent a
  message (answering a message request accepts it, as in Signal). Anybody else is refused
  with ``forbidden`` and a message saying so; nothing is charged to the target's limit;
* **rate limits**: accounts one account may add per minute (creating a group counts its
  members), and times one account may be added per minute by anybody.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from tidings.protocol import ErrorCode
from tidings.server.ratelimit import RateLimiter
from tidings.server.store import Refused, Store


class GroupAddGate:
    def __init__(
        self,
        store: Store,
        *,
        per_adder_per_minute: int,
        per_target_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.by_adder = RateLimiter(per_adder_per_minute, clock=clock)
        self.by_target = RateLimiter(per_target_per_minute, clock=clock)

    async def admit(self, actor: str, targets: Mapping[str, str]) -> None:
        """Let ``actor`` add ``targets`` (account id -> username) to a group, or raise
        ``Refused``: FORBIDDEN for a target that takes adds from contacts only, RATE_LIMITED
        when the actor or a target is over its limit. Admitting takes from both limits."""
        adding = {a: u for a, u in targets.items() if a != actor}
        if not adding:
            return
        refusing = await self._store.refusing_group_adds(actor, list(adding))
        if refusing:
            names = ", ".join(sorted(adding[a] for a in refusing))
            raise Refused(
                ErrorCode.FORBIDDEN,
                f"{names} only accept{'s' if len(refusing) == 1 else ''} group adds from "
                "contacts: send them a direct message and wait for their reply",
            )
        # No await from here on: checking and taking are one step on the event loop.
        if self.by_adder.available(actor) < min(len(adding), self.by_adder.capacity):
            raise Refused(ErrorCode.RATE_LIMITED, "adding too many people to groups: try later")
        busy = sorted(u for a, u in adding.items() if self.by_target.available(a) < 1)
        if busy:
            raise Refused(
                ErrorCode.RATE_LIMITED,
                f"{', '.join(busy)} {_was(busy)} added to too many groups just now: try later",
            )
        self.by_adder.charge(actor, len(adding))
        for account in adding:
            self.by_target.charge(account, 1)


def _was(names: Sequence[str]) -> str:
    return "was" if len(names) == 1 else "were"
