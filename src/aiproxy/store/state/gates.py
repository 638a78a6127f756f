"""Gates: the limits one request must pass, checked and taken together in one atomic step.

Admission of a request touches several limits at once (requests per minute, requests per day,
a dollar or token budget, a concurrency slot) for the key and, when the caller holds packages,
for one of them. :meth:`SharedState.admit` checks every gate and takes them all, or takes none:
on Redis it is one script run (one round trip), in memory one uninterrupted call. Nothing is
left to undo when a later gate refuses.

Kinds of gate (``limit`` is always > 0; an unlimited limit is simply not a gate):

``rate``
    Sliding window: at most ``limit`` hits in the last ``span`` seconds (like :meth:`hit`).
``count``
    Fixed-window counter (e.g. requests today): passes when ``value + amount <= limit``, then adds
    ``amount``. The key is created by :meth:`seed` with its window as ttl.
``budget``
    Quota with reservations (tokens or dollars): passes while ``used + held < limit``, then holds
    ``min(amount, limit - used - held)`` for the request until :meth:`settle` turns the hold into
    what was really used. A request admitted with room left completes and is billed even when it
    ends up above the limit, so N instances overspend by at most what is already in flight. Holds
    carry a lease (the request's slot lease) and are dropped when it runs out, so a crashed
    instance never locks a budget. ``span`` is the key's ttl, renewed on every admission.
``slot``
    Concurrency slot (like :meth:`acquire_slot`) leased for ``span`` seconds.

Counters and budgets are built from the database (what was really served); a gate whose key is
missing from shared state (fresh Redis, restarted process, new day) is reported back as unseeded
and nothing is taken. The caller then seeds it (:meth:`seed`, only if still absent) and asks again.

Gates come in groups: the ``required`` ones, and ``choices`` of which the first group that passes
whole is taken (a caller's packages, earliest expiry first). When no choice passes the request is
refused with the first choice's reason that is not a spent budget: a package whose budget is used
up counts as not held. When every choice failed on a budget, ``must_choose`` decides between
refusing (with the first choice's reason) and admitting with none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GateKind = Literal["rate", "count", "budget", "slot"]
GATE_KINDS = ("rate", "count", "budget", "slot")


@dataclass(frozen=True, slots=True)
class Gate:
    kind: GateKind
    key: str
    limit: float
    span: float  # seconds: the rate window, the counter's ttl, the budget's ttl, the slot's lease
    amount: float = 1.0  # count: how much to add; budget: how much to hold (the request's estimate)

    def __post_init__(self) -> None:
        if self.kind not in GATE_KINDS:
            raise ValueError(f"unknown gate kind {self.kind!r}")
        if not self.limit > 0 or not self.span > 0 or self.amount < 0:
            raise ValueError(f"gate {self.key!r}: limit and span must be > 0, amount >= 0")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`SharedState.admit` decided.

    Admitted: ``choice`` is the index of the choice taken, or None when none was needed or every
    choice had spent its budget and ``must_choose`` was false. Refused: ``group`` is None for the
    required gates or the index of the choice, ``gate`` the index of the refusing gate within it,
    ``retry_after`` the seconds until a rate gate opens again (0 otherwise). ``unseeded`` lists
    the gates to seed first (nothing was taken then, and ``admitted`` is False).
    """

    admitted: bool
    choice: int | None = None
    group: int | None = None
    gate: int = -1
    retry_after: float = 0.0
    unseeded: tuple[Gate, ...] = ()


ADMITTED = Verdict(True)  # the common answer, built once


def pick(
    outcomes: list[tuple[int, float, bool] | None], must_choose: bool
) -> tuple[int | None, tuple[int, float] | None, int | None]:
    """Which choice is taken, from each choice's first failure (gate index, retry_after, failed on a
    budget) or None when it passes: ``(chosen, refusal, refusing_choice)``. Shared by both backends
    (the Redis script implements the same rule in Lua)."""
    for index, failure in enumerate(outcomes):
        if failure is None:
            return index, None, None
    for index, failure in enumerate(outcomes):
        assert failure is not None
        if not failure[2]:
            return None, (failure[0], failure[1]), index
    if must_choose and outcomes:
        first = outcomes[0]
        assert first is not None
        return None, (first[0], first[1]), 0
    return None, None, None
