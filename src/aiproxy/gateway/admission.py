"""Admission: every limit a request must pass, taken in one step and given back in one.

`Admission.admit` turns the caller's limits into gates (store/state/gates.py): the key's requests
per minute and per day, its dollars this month, the user's concurrent requests. Shared state
checks them all and takes them all at once (one Redis round trip), or refuses without taking
anything. Dollar quotas are budgets: the request holds an estimate of its cost, so concurrent
requests on any number of instances cannot all pass a nearly spent quota; the hold becomes the
real cost when the request is billed.

The `Ticket` it returns is an async context manager: on the way out it settles everything in one
more round trip, on every path. Billed requests turn their holds into what they cost; requests
that failed before any account took them give their day's request back; the user's slot is
released. Nothing is undone by hand.

Counters and budgets start from the database when shared state has lost them (fresh Redis,
restarted single instance, a new day). Without shared state a limit cannot be checked: a request
that has one is refused with 503, one without any never touches shared state.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from ..state_keys import user_slots
from ..store.db import Database
from ..store.state import SharedState, StateUnavailable, warn_unavailable
from ..store.state.gates import Gate
from . import counters
from . import errors as e
from .auth import Caller
from .errors import GatewayError

log = logging.getLogger(__name__)

MINUTE = 60.0
DAY_TTL = 2 * 86400.0
MONTH_TTL = 32 * 86400.0
SEED_ROUNDS = 3  # a key can vanish again between seeding and admitting (expiry, flush): retry
# Output a request may produce when it does not say: enough that a typical answer is covered,
# while a nearly spent quota still admits a small request (holds never exceed what is left).
DEFAULT_OUTPUT_ESTIMATE = 4096
_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def estimate_tokens(payload: dict[str, Any], body_size: int) -> tuple[int, int]:
    """(input, output) tokens a request may use, for holds: about four bytes of body per input
    token, and the output cap the client asked for."""
    output = None
    for name in _OUTPUT_FIELDS:
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            output = value
            break
    if output is None:
        config = payload.get("generationConfig")
        value = config.get("maxOutputTokens") if isinstance(config, dict) else None
        output = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
    return body_size // 4 + 1, min(output or DEFAULT_OUTPUT_ESTIMATE, 10_000_000)


@dataclass(slots=True)
class _Gates:
    """Gates being built for one request, with what each refusal says and where each seed comes from."""

    gates: list[Gate] = field(default_factory=list)
    refusals: list[Callable[[float], GatewayError]] = field(default_factory=list)
    seeds: dict[str, Callable[[], Awaitable[float]]] = field(default_factory=dict)

    def add(
        self,
        gate: Gate,
        refusal: Callable[[float], GatewayError],
        seed: Callable[[], Awaitable[float]] | None = None,
    ) -> None:
        self.gates.append(gate)
        self.refusals.append(refusal)
        if seed is not None:
            self.seeds[gate.key] = seed


def _refuse(status: int, message: str, code: str | None = None) -> Callable[[float], GatewayError]:
    return lambda _retry: GatewayError(status, message, code=code)


def _refuse_rate(message: str) -> Callable[[float], GatewayError]:
    def refusal(retry: float) -> GatewayError:
        return GatewayError(429, message, headers={"retry-after": str(max(1, int(retry + 0.999)))})

    return refusal


class Ticket:
    """One admitted request's holds; leaving the `async with` settles them (see the module doc)."""

    __slots__ = (
        "_admission",
        "_cost_budgets",
        "_counts",
        "_slots",
        "cost",
        "holder",
        "served",
        "tokens",
    )

    def __init__(
        self,
        admission: Admission,
        holder: str,
        *,
        counts: list[str],
        cost_budgets: list[str],
        slots: list[str],
    ) -> None:
        self._admission = admission
        self.holder = holder
        self._counts = counts
        self._cost_budgets = cost_budgets
        self._slots = slots
        self.served = False  # an account took the request: its requests count stays used
        self.tokens = 0
        self.cost = 0.0

    def bill(self, *, tokens: int, cost: float) -> None:
        """What the request really used (an account served it)."""
        self.served = True
        self.tokens = tokens
        self.cost = cost

    @property
    def slots(self) -> list[str]:
        return self._slots

    @property
    def budgets(self) -> list[str]:
        return self._cost_budgets

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        budgets = [(key, self.cost) for key in self._cost_budgets]
        counts = [] if self.served else [(key, 1) for key in self._counts]
        await self._admission.settle(self, budgets, counts)


@dataclass(frozen=True, slots=True)
class Request:
    """What admission needs to know about the request itself."""

    model: str
    account_types: frozenset[str]  # the account types that could serve it (platform checks)
    tokens: int  # estimated tokens, held against token quotas
    cost: float  # estimated dollars, held against dollar quotas


class Admission:
    def __init__(self, state: SharedState, db: Database, holder_lease: Callable[[], float]) -> None:
        self._state = state
        self._db = db
        self._lease = holder_lease

    async def admit(self, caller: Caller, holder: str, request: Request) -> Ticket:
        """Take every limit of this request, or refuse it (429 over a limit, 503 when a limit it
        has cannot be checked)."""
        now = datetime.now(UTC)
        required = self._key_gates(caller, now, request.cost)
        if caller.user_max_concurrency > 0:
            required.add(
                Gate("slot", user_slots(caller.user_id), caller.user_max_concurrency, self._lease()),
                _refuse(429, e.USER_CONCURRENCY),
            )
        ticket = Ticket(
            self,
            holder,
            counts=[g.key for g in required.gates if g.kind == "count"],
            cost_budgets=[g.key for g in required.gates if g.kind == "budget"],
            slots=[g.key for g in required.gates if g.kind == "slot"],
        )
        if required.gates:
            try:
                await self._take(holder, required)
            except StateUnavailable as exc:
                warn_unavailable(log, "refusing requests with limits (key or user)", exc)
                raise GatewayError(503, e.STATE_UNAVAILABLE) from exc
        return ticket

    async def _take(self, holder: str, required: _Gates) -> None:
        for _ in range(SEED_ROUNDS):
            verdict = await self._state.admit(holder, self._lease(), required.gates)
            if verdict.admitted:
                return
            if not verdict.unseeded:
                raise required.refusals[verdict.gate](verdict.retry_after)
            for gate in verdict.unseeded:
                await self._state.seed(gate, await required.seeds[gate.key]())
        raise StateUnavailable("counters vanished while being seeded")

    def _key_gates(self, caller: Caller, now: datetime, cost_estimate: float) -> _Gates:
        gates = _Gates()
        key_id, db = caller.key_id, self._db
        if caller.rate_limit > 0:
            gates.add(
                Gate("rate", f"rate:key:{key_id}", caller.rate_limit, MINUTE), _refuse_rate(e.RATE_LIMITED)
            )
        if caller.daily_limit > 0:
            day = datetime(now.year, now.month, now.day, tzinfo=UTC)
            gates.add(
                Gate("count", f"count:key:{key_id}:day:{now:%Y%m%d}", caller.daily_limit, DAY_TTL),
                _refuse(429, e.DAILY_LIMIT),
                lambda: counters.key_requests_since(db, key_id, day),
            )
        if caller.monthly_quota > 0:
            month = datetime(now.year, now.month, 1, tzinfo=UTC)
            gates.add(
                Gate(
                    "budget",
                    f"budget:key:{key_id}:month:{now:%Y%m}",
                    caller.monthly_quota,
                    MONTH_TTL,
                    cost_estimate,
                ),
                _refuse(429, e.MONTHLY_QUOTA),
                lambda: counters.key_cost_since(db, key_id, month),
            )
        return gates

    async def settle(
        self, ticket: Ticket, budgets: list[tuple[str, float]], counts: list[tuple[str, int]]
    ) -> None:
        """Never raises for an outage: holds and slots then run out with their leases, and a day's
        request that should have been given back stays counted (the safe side)."""
        if not (budgets or counts or ticket.slots):
            return
        try:
            await self._state.settle(ticket.holder, budgets=budgets, counts=counts, slots=ticket.slots)
        except StateUnavailable as exc:
            warn_unavailable(log, "admission holds not settled (their leases expire)", exc)
