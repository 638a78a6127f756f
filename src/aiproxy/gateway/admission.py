"""Admission: every limit a request must pass, taken in one step and given back in one.

`Admission.admit` turns the caller's limits into gates (store/state/gates.py): the key's requests
per minute and per day, its dollars this month, the user's concurrent requests, and the limits of
the package that is to pay (its rate, its day counted from its start, its token and dollar quotas;
which package that is: `_candidates`, and docs/packages.md). Shared state checks them all and takes
them all at once (one Redis round trip), or refuses without taking anything. Quotas are budgets:
the request holds an estimate of its tokens and cost, so concurrent requests on any number of
instances cannot all pass a nearly spent quota; the hold becomes the real use when the request is
billed.

The `Ticket` it returns is an async context manager: on the way out it settles everything in one
more round trip, on every path. Billed requests turn their holds into what they cost; requests
that failed before any account took them give their day's request back; the user's slot is
released. Nothing is undone by hand.

Counters and budgets start from the database when shared state has lost them (fresh Redis,
restarted single instance, a new day). Without shared state a limit cannot be checked: a request
that has one is refused with 503, one without any never touches shared state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from ..billing.pricing import ModelPrice, Usage, cost_of
from ..state_keys import user_slots
from ..store.db import Database
from ..store.state import SharedState, StateUnavailable, warn_unavailable
from ..store.state.gates import Gate
from . import counters
from . import errors as e
from .auth import Caller, Grant
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
    in_tokens: set[str] = field(default_factory=set)  # budgets counted in tokens (the others: dollars)

    def add(
        self,
        gate: Gate,
        refusal: Callable[[float], GatewayError],
        seed: Callable[[], Awaitable[float]] | None = None,
        *,
        tokens: bool = False,
    ) -> None:
        self.gates.append(gate)
        self.refusals.append(refusal)
        if seed is not None:
            self.seeds[gate.key] = seed
        if tokens:
            self.in_tokens.add(gate.key)


def _refuse(status: int, message: str, code: str | None = None) -> Callable[[float], GatewayError]:
    return lambda _retry: GatewayError(status, message, code=code)


def _refuse_rate(message: str) -> Callable[[float], GatewayError]:
    def refusal(retry: float) -> GatewayError:
        return GatewayError(429, message, headers={"retry-after": str(max(1, int(retry + 0.999)))})

    return refusal


_BUSY_USER = _refuse(429, e.USER_CONCURRENCY)


@functools.lru_cache(maxsize=4096)
def _user_slot(user_id: int, limit: int, lease: float) -> Gate:
    return Gate("slot", user_slots(user_id), limit, lease)


class Ticket:
    """One admitted request's holds; leaving the `async with` settles them (see the module doc)."""

    __slots__ = (
        "_admission",
        "_cost_budgets",
        "_counts",
        "_slots",
        "_token_budgets",
        "cost",
        "holder",
        "package_id",
        "served",
        "tokens",
    )

    def __init__(self, admission: Admission, holder: str, *, package_id: int | None) -> None:
        self._admission = admission
        self.holder = holder
        self.package_id = package_id  # the user package that pays for it, if any
        self._counts: list[str] = []
        self._cost_budgets: list[str] = []
        self._token_budgets: list[str] = []
        self._slots: list[str] = []
        self.served = False  # an account took the request: its requests count stays used
        self.tokens = 0
        self.cost = 0.0

    def hold(self, gate: Gate, *, tokens: bool) -> None:
        """Remember a gate taken for this request, to settle it on the way out."""
        if gate.kind == "count":
            self._counts.append(gate.key)
        elif gate.kind == "budget":
            (self._token_budgets if tokens else self._cost_budgets).append(gate.key)
        elif gate.kind == "slot":
            self._slots.append(gate.key)

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
        return self._cost_budgets + self._token_budgets

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        budgets = [(key, self.cost) for key in self._cost_budgets]
        budgets += [(key, float(self.tokens)) for key in self._token_budgets]
        counts = [] if self.served else [(key, 1) for key in self._counts]
        await self._admission.settle(self, budgets, counts)


class Request:
    """What admission needs to know about the request itself. Its estimate (tokens and dollars,
    held against quotas) is worked out only when a quota asks for it: most requests have none."""

    __slots__ = ("_body_size", "_estimate", "_payload", "_price", "_rate", "account_types", "client", "model")

    def __init__(
        self,
        model: str,
        account_types: frozenset[str],
        *,
        payload: dict[str, Any],
        body_size: int,
        price: ModelPrice | None,
        rate: float,
        client: str | None = None,
    ) -> None:
        self.model = model
        self.client = client  # the client type identified, when a filter asked (packages' allowed_clients)
        self.account_types = account_types  # the account types that could serve it (platform checks)
        self._payload = payload
        self._body_size = body_size
        self._price = price
        self._rate = rate
        self._estimate: tuple[int, float] | None = None

    def _estimated(self) -> tuple[int, float]:
        if self._estimate is None:
            input_tokens, output_tokens = estimate_tokens(self._payload, self._body_size)
            price = self._price
            cost = cost_of(Usage(input_tokens, output_tokens), price, self._rate).total if price else 0.0
            self._estimate = (input_tokens + output_tokens, cost)
        return self._estimate

    @property
    def tokens(self) -> int:
        """Estimated tokens, held against token quotas."""
        return self._estimated()[0]

    @property
    def cost(self) -> float:
        """Estimated dollars, held against dollar quotas."""
        return self._estimated()[1]


def package_refusal(grant: Grant, request: Request, now: float) -> GatewayError | None:
    """Why this package cannot serve the request whatever its counters say, or None."""
    if grant.status == "disabled":
        return GatewayError(403, e.PACKAGE_DISABLED)
    if grant.status == "expired" or now >= grant.end:
        return GatewayError(403, e.PACKAGE_EXPIRED)
    if grant.status == "exhausted":
        return GatewayError(429, e.PACKAGE_EXHAUSTED, code="insufficient_quota")
    if now < grant.start:
        return GatewayError(403, e.PACKAGE_NOT_STARTED)
    if grant.allowed_platforms is not None and not grant.allowed_platforms & request.account_types:
        return GatewayError(403, e.PACKAGE_PLATFORM_FORBIDDEN)
    if grant.allowed_models is not None and request.model not in grant.allowed_models:
        return GatewayError(403, e.PACKAGE_MODEL_FORBIDDEN)
    if grant.allowed_clients is not None and request.client not in grant.allowed_clients:
        return GatewayError(
            403,
            e.PACKAGE_CLIENT_FORBIDDEN,
            detail=f"client {request.client or 'unidentified'} not in package",
        )
    return None


class Admission:
    def __init__(self, state: SharedState, db: Database, holder_lease: Callable[[], float]) -> None:
        self._state = state
        self._db = db
        self._lease = holder_lease
        self._seeding: dict[str, asyncio.Future[None]] = {}  # gate key -> the seeding under way

    async def admit(self, caller: Caller, holder: str, request: Request, *, require_package: bool) -> Ticket:
        """Take every limit of this request, or refuse it (429 over a limit, 403 without a package
        that may serve it, 503 when a limit it has cannot be checked)."""
        now = time.time()
        required = self._key_gates(caller, now, request)
        if caller.user_max_concurrency > 0:
            required.add(_user_slot(caller.user_id, caller.user_max_concurrency, self._lease()), _BUSY_USER)
        grants: list[Grant] = []
        must_choose = False
        if caller.bound_package is not None or caller.packages or require_package:
            grants, must_choose = self._candidates(caller, request, now, require_package)
        choices = [self._package_gates(grant, now, request) for grant in grants]
        chosen: int | None = 0 if grants else None
        if required.gates or any(choice.gates for choice in choices):
            try:
                chosen = await self._take(holder, required, choices, must_choose)
            except StateUnavailable as exc:
                warn_unavailable(log, "refusing requests with limits (key, user or package)", exc)
                raise GatewayError(503, e.STATE_UNAVAILABLE) from exc
        ticket = Ticket(self, holder, package_id=grants[chosen].id if chosen is not None else None)
        paying = choices[chosen].gates if chosen is not None else []
        for gate in (*required.gates, *paying):
            ticket.hold(gate, tokens=chosen is not None and gate.key in choices[chosen].in_tokens)
        return ticket

    @staticmethod
    def _candidates(
        caller: Caller, request: Request, now: float, require_package: bool
    ) -> tuple[list[Grant], bool]:
        """The packages that may pay for this request, in the order to try them, and whether one
        must. A key bound to a package uses that one only. Otherwise the user's live packages are
        tried earliest expiry first; a user who holds live packages is served only through them,
        one without any is served without a package unless `require_package` is on."""
        if caller.bound_package is not None:
            refusal = package_refusal(caller.bound_package, request, now)
            if refusal is not None:
                raise refusal
            return [caller.bound_package], True
        live = [g for g in caller.packages if g.start <= now < g.end]
        fitting: list[Grant] = []
        first_refusal: GatewayError | None = None
        for grant in live:
            refusal = package_refusal(grant, request, now)
            if refusal is None:
                fitting.append(grant)
            elif first_refusal is None:
                first_refusal = refusal
        if first_refusal is not None and not fitting:
            raise first_refusal
        if not live and require_package:
            raise GatewayError(403, e.NO_PACKAGE)
        return fitting, require_package

    async def _take(
        self, holder: str, required: _Gates, choices: list[_Gates], must_choose: bool
    ) -> int | None:
        groups = [c.gates for c in choices]
        for _ in range(SEED_ROUNDS):
            verdict = await self._state.admit(
                holder, self._lease(), required.gates, groups, must_choose=must_choose
            )
            if verdict.admitted:
                return verdict.choice
            if not verdict.unseeded:
                refusing = required if verdict.group is None else choices[verdict.group]
                raise refusing.refusals[verdict.gate](verdict.retry_after)
            seeds = dict(required.seeds)
            for choice in choices:
                seeds.update(choice.seeds)
            for gate in verdict.unseeded:
                await self._seed(gate, seeds[gate.key])
        raise StateUnavailable("counters vanished while being seeded")

    async def _seed(self, gate: Gate, source: Callable[[], Awaitable[float]]) -> None:
        """Seed one counter from the database, once for every request that finds it missing at the
        same time (a new key, a new day or month, a Redis that lost its data: every request in flight
        for it at once), instead of one database read per request."""
        running = self._seeding.get(gate.key)
        if running is None:
            running = self._seeding[gate.key] = asyncio.ensure_future(self._seed_from(gate, source))
            running.add_done_callback(lambda _done, key=gate.key: self._seeding.pop(key, None))
        await asyncio.shield(running)

    async def _seed_from(self, gate: Gate, source: Callable[[], Awaitable[float]]) -> None:
        await self._state.seed(gate, await source())

    def _key_gates(self, caller: Caller, now: float, request: Request) -> _Gates:
        gates = _Gates()
        key_id, db = caller.key_id, self._db
        if caller.rate_limit > 0:
            gates.add(
                Gate("rate", f"rate:key:{key_id}", caller.rate_limit, MINUTE), _refuse_rate(e.RATE_LIMITED)
            )
        if caller.daily_limit > 0 or caller.monthly_quota > 0:
            today = datetime.fromtimestamp(now, UTC)
            if caller.daily_limit > 0:
                day = datetime(today.year, today.month, today.day, tzinfo=UTC)
                gates.add(
                    Gate("count", f"count:key:{key_id}:day:{today:%Y%m%d}", caller.daily_limit, DAY_TTL),
                    _refuse(429, e.DAILY_LIMIT),
                    lambda: counters.key_requests_since(db, key_id, day),
                )
            if caller.monthly_quota > 0:
                month = datetime(today.year, today.month, 1, tzinfo=UTC)
                gates.add(
                    Gate(
                        "budget",
                        f"budget:key:{key_id}:month:{today:%Y%m}",
                        caller.monthly_quota,
                        MONTH_TTL,
                        request.cost,
                    ),
                    _refuse(429, e.MONTHLY_QUOTA),
                    lambda: counters.key_cost_since(db, key_id, month),
                )
        return gates

    def _package_gates(self, grant: Grant, now: float, request: Request) -> _Gates:
        """A package's limits. Its counters are named after its start, so a package restarted by
        an admin begins with fresh ones; its days are counted from that start, not from midnight."""
        gates = _Gates()
        db, package_id = self._db, grant.id
        name = f"package:{package_id}:{int(grant.start)}"
        if grant.rate_limit > 0:
            gates.add(
                Gate("rate", f"rate:package:{package_id}", grant.rate_limit, MINUTE),
                _refuse_rate(e.PACKAGE_RATE_LIMITED),
            )
        if grant.daily_limit > 0:
            day = int((now - grant.start) // 86400)
            since = datetime.fromtimestamp(grant.start + day * 86400, UTC)
            gates.add(
                Gate("count", f"count:{name}:day:{day}", grant.daily_limit, DAY_TTL),
                _refuse(429, e.PACKAGE_DAILY_LIMIT),
                lambda: counters.package_requests_since(db, package_id, since),
            )
        exhausted = _refuse(429, e.PACKAGE_EXHAUSTED, code="insufficient_quota")
        if grant.token_quota > 0:
            gates.add(
                Gate("budget", f"budget:{name}:tokens", grant.token_quota, DAY_TTL, request.tokens),
                exhausted,
                lambda: counters.package_used(db, package_id, tokens=True),
                tokens=True,
            )
        if grant.cost_quota > 0:
            gates.add(
                Gate("budget", f"budget:{name}:cost", grant.cost_quota, DAY_TTL, request.cost),
                exhausted,
                lambda: counters.package_used(db, package_id, tokens=False),
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
