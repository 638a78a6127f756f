"""The gateway's live shared state as an operator sees it: sticky bindings and concurrency slots.

The gateway writes these keys on the hot path (`scheduler.StickySessions`, the account slots the
relay takes, the user slots admission takes); this module only reads and removes them, for the
admin's cache routes. Everything here walks shared state (a SCAN, then batched reads), so it
serves an admin page, never a request. Since the state is shared, what it shows and removes is
the same on every instance.

A binding is shown by its session id `<api key id>.<digest>`: the digest already names it in
the state key (a hash of the client's session id, whose first 16 characters are the request
log's `session_hash`), so an operator can find and drop one without the client's own id ever
being kept or shown. `scrape_figures` gives `/metrics` the same figures (accounts, slots).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client.core import Metric

from .. import state_keys
from ..observe.metrics import gauge
from ..store.state import SharedState, StateUnavailable
from .pool import AccountPool
from .scheduler import STICKY_PREFIX, parse_binding, sticky_key

# Keys per batched read or delete: each batch is one short round trip under the state's timeout.
BATCH = 500
T = TypeVar("T")

SESSION_ID = re.compile(r"^([1-9][0-9]{0,18})\.([0-9a-f]{32})$")
SESSION_ID_PATTERN = SESSION_ID.pattern
_STICKY_KEY = re.compile(r"^" + re.escape(STICKY_PREFIX) + r"([0-9]+):([0-9a-f]{32})$")


@dataclass(frozen=True, slots=True)
class Binding:
    key_id: int
    digest: str
    account_id: int
    bound_at: int | None  # epoch seconds; None for a binding written before the time was kept
    ttl: float | None  # seconds left

    @property
    def session_id(self) -> str:
        return f"{self.key_id}.{self.digest}"

    @property
    def state_key(self) -> str:
        return sticky_key(self.key_id, self.digest)

    def age(self, now: float) -> int | None:
        return None if self.bound_at is None else max(0, int(now - self.bound_at))


def parse_session_id(session_id: str) -> tuple[int, str] | None:
    """(api key id, digest) of an admin-facing session id, or None when it is not one."""
    found = SESSION_ID.match(session_id)
    return (int(found.group(1)), found.group(2)) if found else None


def _binding_key(key: str) -> tuple[int, str] | None:
    found = _STICKY_KEY.match(key)
    return (int(found.group(1)), found.group(2)) if found else None


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


@dataclass(frozen=True, slots=True)
class SlotsReset:
    owners: int  # users or accounts that held slots
    released: int  # live leases dropped


class LiveState:
    def __init__(self, state: SharedState) -> None:
        self._state = state

    # -- sticky bindings ---------------------------------------------------------------------------

    async def _binding_keys(self, key_ids: Collection[int] | None) -> list[tuple[str, int, str]]:
        """(state key, api key id, digest) of every binding, or only the given keys' ones."""
        found = []
        for key in await self._state.scan(STICKY_PREFIX):
            parsed = _binding_key(key)
            if parsed is not None and (key_ids is None or parsed[0] in key_ids):
                found.append((key, *parsed))
        return found

    async def count_bindings(self) -> int:
        return len(await self._binding_keys(None))

    async def bindings(
        self, *, key_ids: Collection[int] | None = None, account_id: int | None = None
    ) -> list[Binding]:
        """Live bindings, newest first; only the given keys' or only those to one account."""
        keys = await self._binding_keys(key_ids)
        found: list[Binding] = []
        for chunk in _chunks(keys):
            values = await self._state.get_with_ttl([key for key, _, _ in chunk])
            for (_, key_id, digest), (value, ttl) in zip(chunk, values, strict=True):
                if value is None:
                    continue  # expired since the scan
                try:
                    bound, bound_at = parse_binding(value)
                except ValueError:
                    continue
                if account_id is None or bound == account_id:
                    found.append(Binding(key_id, digest, bound, bound_at, ttl))
        found.sort(key=lambda b: (-(b.bound_at or 0), b.key_id, b.digest))
        return found

    async def drop_session(self, session_id: str) -> bool:
        """Remove one binding by its admin-facing id; False when there is none (or the id is not one)."""
        parsed = parse_session_id(session_id)
        if parsed is None:
            return False
        return await self._state.delete(sticky_key(*parsed)) > 0

    async def drop_bindings(
        self, *, key_ids: Collection[int] | None = None, account_id: int | None = None
    ) -> int:
        """Remove bindings (all of them, the given keys' ones, or those to one account); how many.

        A binding to another account made between the read and the delete may go too: its session
        just picks an account afresh on its next request."""
        if account_id is None:
            keys = [key for key, _, _ in await self._binding_keys(key_ids)]
        else:
            keys = [b.state_key for b in await self.bindings(key_ids=key_ids, account_id=account_id)]
        removed = 0
        for chunk in _chunks(keys):
            removed += await self._state.delete(*chunk)
        return removed

    # -- concurrency slots -------------------------------------------------------------------------

    async def _slot_keys(self, prefix: str) -> list[tuple[str, int]]:
        found = []
        for key in await self._state.scan(prefix):
            owner = key[len(prefix) :]
            if owner.isdigit():
                found.append((key, int(owner)))
        return found

    async def slots_in_use(self, prefix: str) -> dict[int, int]:
        """{user or account id: live leases} for every owner holding at least one.

        `prefix` is `state_keys.USER_SLOTS` or `state_keys.ACCOUNT_SLOTS`."""
        in_use = {}
        for chunk in _chunks(await self._slot_keys(prefix)):
            counts = await self._state.slot_counts([key for key, _ in chunk])  # a round trip per chunk
            in_use.update((owner, count) for (_, owner), count in zip(chunk, counts, strict=True) if count)
        return in_use

    async def reset_all_slots(self, prefix: str) -> SlotsReset:
        """Drop every lease under `prefix`: requests in flight finish, their slots are not counted."""
        owners = released = 0
        for key, _ in await self._slot_keys(prefix):
            dropped = await self._state.reset_slots(key)
            if dropped:
                owners += 1
                released += dropped
        return SlotsReset(owners, released)

    async def user_slots(self, user_id: int) -> tuple[int, list[str]]:
        key = state_keys.user_slots(user_id)
        return await self._state.slot_count(key), await self._state.slot_holders(key)

    async def account_slots(self, account_id: int) -> tuple[int, list[str]]:
        key = state_keys.account_slots(account_id)
        return await self._state.slot_count(key), await self._state.slot_holders(key)

    async def reset_user_slots(self, user_id: int) -> int:
        return await self._state.reset_slots(state_keys.user_slots(user_id))

    async def reset_account_slots(self, account_id: int) -> int:
        return await self._state.reset_slots(state_keys.account_slots(account_id))


async def scrape_figures(pool: AccountPool, state: SharedState) -> list[Metric]:
    """What `/metrics` reads at scrape time: accounts by type and status (this instance's pool
    snapshot), and concurrency slots in use by kind (shared state; left out while it cannot be read)."""
    accounts: dict[tuple[str, ...], float] = {}
    for account in pool.accounts.values():
        accounts[(account.type, account.status)] = accounts.get((account.type, account.status), 0) + 1
    figures = [gauge("aiproxy_accounts", "Enabled accounts by type and status", ("type", "status"), accounts)]
    live = LiveState(state)
    slots: dict[tuple[str, ...], float] = {}
    try:
        for kind, prefix in (("user", state_keys.USER_SLOTS), ("account", state_keys.ACCOUNT_SLOTS)):
            slots[(kind,)] = float(sum((await live.slots_in_use(prefix)).values()))
    except StateUnavailable:
        return figures
    figures.append(gauge("aiproxy_slots_in_use", "Concurrency slots held now, by kind", ("kind",), slots))
    return figures
