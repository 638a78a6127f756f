"""Redis backend: the same contract as :class:`MemoryState`, shared by every app instance.

Every read-modify-write runs as one Lua script, so concurrent instances cannot interleave between
"check" and "write". Time for rate logs and leases comes from ``redis.call('TIME')`` inside the
script, never from the app host, so instances with skewed clocks still agree. Sorted-set scores are
integer microseconds since the epoch (~1.7e15, exactly representable as a double), which keeps
sub-second windows and leases precise.

Outages: every socket operation and the wait for a pooled connection are bounded by one short
timeout, and a failed call opens a circuit breaker: for the
next ``retry_interval`` seconds every call raises :class:`StateUnavailable` at once instead of
waiting on Redis again; then one call goes through as a probe, and its success closes the breaker.
A stalled or dead Redis thus costs a request at most one timeout, and most requests nothing.
The client retries one thing by itself, at once and within that timeout: a command whose pooled
connection turns out to be closed (Redis restarted, or dropped an idle client) is sent again on a
new connection. Otherwise every connection left in the pool from before a restart would fail one
request each, whenever traffic happened to pick it. A timeout is never retried.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import gate_scripts
from .base import RateDecision, SharedState, StateUnavailable, parse_int, require_positive
from .gates import ADMITTED, Gate, Verdict
from .multiplex import Address, Multiplexer, Script

__all__ = ["DEFAULT_TIMEOUT", "RETRY_INTERVAL", "RedisState"]

log = logging.getLogger(__name__)

#: Seconds for connecting, for each reply, and for waiting on a free pooled connection. Every command
#: this backend sends is O(log n) on small keys and answers in well under a millisecond, so 0.5 s is
#: hundreds of times the normal latency (no false alarms on a busy host) yet bounds what a stalled
#: Redis adds to a request.
DEFAULT_TIMEOUT = 0.5
#: Seconds to fail fast after a failure before one call probes Redis again.
RETRY_INTERVAL = 1.0

#: "Redis cannot answer now", as opposed to "the command was wrong": refused or dropped connections
#: (including a server still loading its dataset), timeouts, an exhausted pool, a demoted primary.
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError, TimeoutError)

_P = ParamSpec("_P")
_T = TypeVar("_T")

# Shared prologue: server time in microseconds. Numbers passed to redis.call are converted by Redis
# with full precision, but Lua's own tostring/`..` keeps only 14 digits, hence string.format below.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# Slot sets expire as a whole when their last lease does, so abandoned keys clean themselves up.
_SLOT_KEY_TTL = """
local function refresh_key_ttl(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIRE', key, math.max(1, math.ceil((tonumber(last[2]) - now) / 1000)))
  end
end
"""

# ARGV: amount, ttl_ms or '', command (INCRBY | INCRBYFLOAT). ttl only on creation = fixed window.
_INCR = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call(ARGV[3], KEYS[1], ARGV[1])
if created and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""

# ARGV: limit, window_us, unique member. Returns {allowed, count, retry_after_us}.
_HIT = (
    _NOW
    + """
local key, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if limit <= 0 then return {1, count, 0} end
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, count, math.max(0, tonumber(oldest[2]) + window - now)}
end
redis.call('ZADD', key, now, ARGV[3])
redis.call('PEXPIRE', key, math.max(1, math.ceil(window / 1000)))
return {1, count + 1, 0}
"""
)

# ARGV: window_us. Read-only count: a peek must not prune hits a longer window still needs.
_PEEK = (
    _NOW
    + """
return redis.call('ZCOUNT', KEYS[1], string.format('(%.0f', now - tonumber(ARGV[1])), '+inf')
"""
)

# ARGV: holder, limit, lease_us. A present holder renews even at the limit.
_ACQUIRE = (
    _NOW
    + _SLOT_KEY_TTL
    + """
local key, holder, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if limit > 0 and not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= limit then
  return 0
end
redis.call('ZADD', key, now + tonumber(ARGV[3]), holder)
refresh_key_ttl(key)
return 1
"""
)

# ARGV: holder, lease_us. Only a live lease can be renewed.
_RENEW = (
    _NOW
    + _SLOT_KEY_TTL
    + """
local key, holder = KEYS[1], ARGV[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if not redis.call('ZSCORE', key, holder) then return 0 end
redis.call('ZADD', key, now + tonumber(ARGV[2]), holder)
refresh_key_ttl(key)
return 1
"""
)

# ARGV: 'count' | 'holders'. Live leases only (score strictly in the future), read-only.
_LIVE_SLOTS = (
    _NOW
    + """
local min = string.format('(%.0f', now)
if ARGV[1] == 'count' then return redis.call('ZCOUNT', KEYS[1], min, '+inf') end
return redis.call('ZRANGEBYSCORE', KEYS[1], min, '+inf')
"""
)

_RESET = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1])
return count
"""
)

# Compare-and-delete so a lock that expired and was re-taken is not released by the old owner.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _ms(seconds: float) -> int:
    """Seconds -> whole milliseconds for PX/PEXPIRE, rounded up so a tiny ttl never becomes 0."""
    return max(1, math.ceil(seconds * 1000))


def _us(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1_000_000))


def _guarded(
    method: Callable[Concatenate[RedisState, _P], Awaitable[_T]],
) -> Callable[Concatenate[RedisState, _P], Coroutine[Any, Any, _T]]:
    """Route one operation through the circuit breaker and turn "unreachable" into StateUnavailable.

    While the breaker is closed this costs one attribute test before and after the call."""

    @functools.wraps(method)
    async def guarded(self: RedisState, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._open_until:
            self._probe_or_fail()
        try:
            # No deadline here: the multiplexer bounds connecting and every reply by itself.
            result = await method(self, *args, **kwargs)
        except _UNREACHABLE as exc:
            raise self._tripped(exc) from exc
        if self._open_until:
            self._recovered()
        return result

    return guarded


def _bounded(
    method: Callable[Concatenate[RedisState, _P], Awaitable[_T]],
) -> Callable[Concatenate[RedisState, _P], Coroutine[Any, Any, _T]]:
    """`_guarded` for the few operations that go through the pooled client (walks of the key
    space): one deadline for the whole operation."""

    async def deadline(self: RedisState, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        async with asyncio.timeout(self._timeout):
            return await method(self, *args, **kwargs)

    return _guarded(functools.wraps(method)(deadline))


class RedisState(SharedState):
    """:class:`SharedState` on Redis >= 6.2 (GETDEL). Use :meth:`from_url` to build one."""

    kind = "redis"

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "aiproxy:",
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        if not client.get_encoder().decode_responses:
            raise ValueError("RedisState needs a client created with decode_responses=True")
        self.prefix = prefix
        self._redis = client
        self._timeout = require_positive("timeout", timeout)
        self._retry_interval = require_positive("retry_interval", retry_interval)
        # Circuit breaker: 0.0 while closed, else the monotonic time before which calls fail fast.
        self._open_until = 0.0
        self._reason = ""
        # Every command goes over one multiplexed connection (multiplex.py); the pooled client
        # stays for what needs a connection of its own (walking the key space, INFO).
        pool = client.connection_pool
        address = Address.of_pool(
            pool.connection_kwargs, tls=issubclass(pool.connection_class, SSLConnection)
        )
        # Scripts run by hash (EVALSHA) and are loaded again after a flush or a restart.
        self._incr = Script(_INCR)
        self._hit = Script(_HIT)
        self._peek = Script(_PEEK)
        self._acquire = Script(_ACQUIRE)
        self._renew = Script(_RENEW)
        self._live_slots = Script(_LIVE_SLOTS)
        self._reset = Script(_RESET)
        self._release_lock = Script(_RELEASE_LOCK)
        self._admit = Script(gate_scripts.ADMIT)
        self._seed = Script(gate_scripts.SEED)
        self._settle = Script(gate_scripts.SETTLE)
        self._renew_holds = Script(gate_scripts.RENEW)
        scripts = [value for value in vars(self).values() if isinstance(value, Script)]
        self._mux = Multiplexer(address, timeout=self._timeout, scripts=scripts)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "aiproxy:",
        max_connections: int = 128,
        timeout: float = DEFAULT_TIMEOUT,
        pool_timeout: float | None = None,
        retry_interval: float = RETRY_INTERVAL,
        **redis_kwargs: Any,
    ) -> Self:
        """Connect to ``url`` (redis://, rediss://, unix://); connections are opened lazily.

        ``timeout`` bounds connecting and every operation. A blocking pool makes bursts above
        ``max_connections`` wait for a free connection instead of failing with "Too many connections"
        like the default pool does, but only up to ``pool_timeout`` (default: ``timeout``): with
        sub-millisecond commands, a pool that stays exhausted that long means Redis is not answering.
        Only a command on a connection found closed is retried (once, on a new connection); for
        everything else the circuit breaker decides when Redis is tried again."""
        options: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 1),
            "retry_on_error": [RedisConnectionError],
            **redis_kwargs,
        }
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=max_connections,
            timeout=timeout if pool_timeout is None else pool_timeout,
            **options,
        )
        return cls(Redis.from_pool(pool), prefix=prefix, timeout=timeout, retry_interval=retry_interval)

    @property
    def client(self) -> Redis:
        """The underlying client, for callers needing a Redis feature outside this interface."""
        return self._redis

    def _k(self, key: str) -> str:
        return self.prefix + key

    # ---------------------------------------------------------------- circuit breaker
    @property
    def available(self) -> bool:
        return not self._open_until

    def _probe_or_fail(self) -> None:
        """Breaker open: fail fast, unless the retry interval is over; then this caller is the probe
        and the others keep failing fast until it succeeds (closes) or fails (reopens)."""
        now = time.monotonic()
        if now < self._open_until:
            raise StateUnavailable(self._reason)
        self._open_until = now + self._retry_interval

    def _tripped(self, exc: BaseException) -> StateUnavailable:
        if not self._open_until:  # one line per outage, not one per failed probe
            log.warning(
                "Redis unreachable (%s: %s): failing fast, probing again every %gs",
                type(exc).__name__,
                exc,
                self._retry_interval,
            )
        self._reason = f"{type(exc).__name__}: {exc}"
        self._open_until = time.monotonic() + self._retry_interval
        return StateUnavailable(self._reason)

    def _recovered(self) -> None:
        self._open_until = 0.0
        log.warning("Redis reachable again")

    def _unanswered(self, exc: BaseException) -> None:
        """The error answer to a command nobody waits for (giving back slots and holds): what
        they held runs out with its lease, so only the breaker and the log hear of it."""
        if isinstance(exc, _UNREACHABLE):
            self._tripped(exc)
        else:
            log.warning("Redis refused a release (%s: %s)", type(exc).__name__, exc)

    # ---------------------------------------------------------------- counters
    @_guarded
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ttl_ms = "" if ttl is None else _ms(require_positive("ttl", ttl))
        return int(await self._mux.evalsha(self._incr, [self._k(key)], [int(amount), ttl_ms, "INCRBY"]))

    @_guarded
    async def incr_float(self, key: str, amount: float, ttl: float | None = None) -> float:
        ttl_ms = "" if ttl is None else _ms(require_positive("ttl", ttl))
        return float(
            await self._mux.evalsha(self._incr, [self._k(key)], [repr(float(amount)), ttl_ms, "INCRBYFLOAT"])
        )

    @_guarded
    async def get_int(self, key: str) -> int:
        return parse_int(await self._mux.call("GET", self._k(key)))

    @_guarded
    async def get_float(self, key: str) -> float:
        raw = await self._mux.call("GET", self._k(key))
        return 0.0 if raw is None else float(raw)

    # ---------------------------------------------------------------- sliding window
    @_guarded
    async def hit(self, key: str, limit: int, window: float) -> RateDecision:
        window_us = _us(require_positive("window", window))
        # The member must be unique per hit: two hits in the same microsecond are still two hits.
        allowed, count, retry_us = await self._mux.evalsha(
            self._hit, [self._k(key)], [int(limit), window_us, uuid.uuid4().hex]
        )
        return RateDecision(bool(allowed), int(count), limit, int(retry_us) / 1_000_000)

    @_guarded
    async def peek(self, key: str, window: float) -> int:
        window_us = _us(require_positive("window", window))
        return int(await self._mux.evalsha(self._peek, [self._k(key)], [window_us]))

    # ---------------------------------------------------------------- slots
    @_guarded
    async def acquire_slot(self, key: str, holder: str, limit: int, lease: float) -> bool:
        lease_us = _us(require_positive("lease", lease))
        return bool(await self._mux.evalsha(self._acquire, [self._k(key)], [holder, int(limit), lease_us]))

    @_guarded
    async def release_slot(self, key: str, holder: str) -> None:
        await self._mux.send(self._unanswered, "ZREM", self._k(key), holder)

    @_guarded
    async def renew_slot(self, key: str, holder: str, lease: float) -> bool:
        lease_us = _us(require_positive("lease", lease))
        return bool(await self._mux.evalsha(self._renew, [self._k(key)], [holder, lease_us]))

    @_guarded
    async def slot_count(self, key: str) -> int:
        return int(await self._mux.evalsha(self._live_slots, [self._k(key)], ["count"]))

    @_guarded
    async def slot_counts(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        # Every EVALSHA goes out in the same write: one round trip for all of them.
        counts = await asyncio.gather(
            *(self._mux.evalsha(self._live_slots, [self._k(key)], ["count"]) for key in keys)
        )
        return [int(count) for count in counts]

    @_guarded
    async def slot_holders(self, key: str) -> list[str]:
        return list(await self._mux.evalsha(self._live_slots, [self._k(key)], ["holders"]))

    @_guarded
    async def reset_slots(self, key: str) -> int:
        return int(await self._mux.evalsha(self._reset, [self._k(key)], []))

    # ---------------------------------------------------------------- gates
    def _holders(self, key: str) -> str:
        return self._k(key) + ":holders"

    @_guarded
    async def admit(
        self,
        holder: str,
        lease: float,
        required: Sequence[Gate],
        choices: Sequence[Sequence[Gate]] = (),
        *,
        must_choose: bool = False,
    ) -> Verdict:
        lease_us = _us(require_positive("lease", lease))
        groups = (required, *choices) if choices else (required,)
        keys: list[str] = []
        words = [f"{lease_us} {int(must_choose)} {len(groups)}"]
        rated = False
        for gates in groups:
            words.append(str(len(gates)))
            for gate in gates:
                keys.append(self._k(gate.key))
                if gate.kind == "budget":
                    keys.append(self._holders(gate.key))
                rated = rated or gate.kind == "rate"
                words.append(f"{gate.kind} {float(gate.limit)!r} {_us(gate.span)} {float(gate.amount)!r}")
        member = uuid.uuid4().hex if rated else ""
        reply = [
            int(value)
            for value in await self._mux.evalsha(self._admit, keys, [holder, member, " ".join(words)])
        ]
        if reply[0] == 1:
            return Verdict(True, choice=reply[1] - 1) if reply[1] else ADMITTED
        if reply[0] == 0:
            group = reply[1] - 1 if reply[1] else None
            return Verdict(False, group=group, gate=reply[2] - 1, retry_after=reply[3] / 1_000_000)
        pairs = zip(reply[1::2], reply[2::2], strict=True)
        return Verdict(False, unseeded=tuple(groups[g][i - 1] for g, i in pairs))

    @_guarded
    async def seed(self, gate: Gate, value: float) -> None:
        shown = str(int(value)) if gate.kind == "count" else repr(float(value))
        await self._mux.evalsha(self._seed, [self._k(gate.key)], [gate.kind, shown, _us(gate.span)])

    @_guarded
    async def settle(
        self,
        holder: str,
        *,
        budgets: Sequence[tuple[str, float]] = (),
        counts: Sequence[tuple[str, int]] = (),
        slots: Sequence[str] = (),
    ) -> None:
        if not (budgets or counts):
            for key in slots:  # the common case (no quota, no daily limit): a plain command is cheaper
                await self._mux.send(self._unanswered, "ZREM", self._k(key), holder)
            return
        keys: list[str] = []
        for key, _ in budgets:
            keys += (self._k(key), self._holders(key))
        keys += [self._k(key) for key, _ in counts]
        keys += [self._k(key) for key in slots]
        words = [f"{len(budgets)} {len(counts)} {len(slots)}"]
        words += [repr(float(used)) for _, used in budgets]
        words += [str(int(amount)) for _, amount in counts]
        await self._mux.send_script(self._unanswered, self._settle, keys, [holder, " ".join(words)])

    @_guarded
    async def renew_holds(
        self, holder: str, lease: float, *, slots: Sequence[str] = (), budgets: Sequence[str] = ()
    ) -> None:
        if not (slots or budgets):
            return
        keys = [self._k(key) for key in slots] + [self._holders(key) for key in budgets]
        await self._mux.evalsha(
            self._renew_holds, keys, [holder, _us(require_positive("lease", lease)), len(slots)]
        )

    @_guarded
    async def budget(self, key: str) -> tuple[float, float] | None:
        used, held = await self._mux.call("HMGET", self._k(key), "used", "held")
        return None if used is None else (float(used), float(held or 0.0))

    # ---------------------------------------------------------------- key/value
    @_guarded
    async def get(self, key: str) -> str | None:
        return await self._mux.call("GET", self._k(key))

    @_guarded
    async def set(
        self, key: str, value: str, ttl: float | None = None, *, only_if_absent: bool = False
    ) -> bool:
        command: list[Any] = ["SET", self._k(key), value]
        if ttl is not None:
            command += ("PX", _ms(require_positive("ttl", ttl)))
        if only_if_absent:
            command.append("NX")
        return await self._mux.call(*command) is not None

    @_guarded
    async def get_with_ttl(self, keys: Sequence[str]) -> list[tuple[str | None, float | None]]:
        if not keys:
            return []
        replies = await self._mux.call_many(
            [command for key in keys for command in (("GET", self._k(key)), ("PTTL", self._k(key)))]
        )
        return [
            (value, None if value is None or int(remaining) < 0 else int(remaining) / 1000)
            for value, remaining in zip(replies[::2], replies[1::2], strict=True)
        ]

    @_guarded
    async def pop(self, key: str) -> str | None:
        return await self._mux.call("GETDEL", self._k(key))

    @_guarded
    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(await self._mux.call("DEL", *(self._k(k) for k in keys)))

    @_guarded
    async def expire(self, key: str, ttl: float) -> bool:
        return bool(await self._mux.call("PEXPIRE", self._k(key), _ms(require_positive("ttl", ttl))))

    @_guarded
    async def ttl(self, key: str) -> float | None:
        remaining = int(await self._mux.call("PTTL", self._k(key)))
        return None if remaining < 0 else remaining / 1000  # -2: no key, -1: no ttl

    @_bounded
    async def scan(self, prefix: str) -> list[str]:
        # Escape glob characters so the prefix is matched literally (a key may contain "*" or "[").
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.prefix + prefix) + "*"
        strip = len(self.prefix)
        found = {key[strip:] async for key in self._redis.scan_iter(match=pattern, count=1000)}
        return sorted(found)  # SCAN may return a key more than once; the set dedupes

    # ---------------------------------------------------------------- locks
    @_guarded
    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        ok = await self._mux.call("SET", self._k(key), token, "PX", _ms(require_positive("ttl", ttl)), "NX")
        return token if ok is not None else None

    @_guarded
    async def release_lock(self, key: str, token: str) -> bool:
        return bool(await self._mux.evalsha(self._release_lock, [self._k(key)], [token]))

    # ---------------------------------------------------------------- lifecycle
    async def ping(self) -> bool:
        # Not behind the breaker: readiness checks want Redis's answer now, and a success is as good
        # a probe as any other call.
        try:
            answered = await self._mux.call("PING") == "PONG"
        except _UNREACHABLE as exc:
            self._tripped(exc)
            return False
        except RedisError:  # e.g. wrong password: reachable but unusable
            return False
        if self._open_until:
            self._recovered()
        return answered

    async def close(self) -> None:
        self._mux.close()
        await self._redis.aclose()
