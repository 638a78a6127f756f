"""Health checks: one real upstream call through an account that is out of rotation, to bring it back.

An account leaves rotation when real traffic says so (the error rules mark it `rate_limited`,
`overloaded` or `invalid`). A cooldown ends by itself at the time the relay chose, which may be
later than the upstream's real reset (no reset header, the one-hour default); an `invalid` mark
has no end at all. The checker probes such accounts (`probe.probe_account`: neither limited,
billed nor request-logged) and applies what it learns:

- a successful probe brings a `rate_limited`, `overloaded` or `invalid` account back to `valid`;
- a failed probe changes nothing, except when the error rules call the failure the account's own
  (target `invalid`: rejected credentials, a suspended or billing-blocked account) — then the
  account is marked `invalid`, whatever its status was. One failed probe is no proof of a rate
  limit or an overload (the probe's model or a passing hiccup may be the cause), so those marks
  are left to real traffic. An OAuth account answered 401 is refreshed and probed once more,
  like relayed traffic; a refused refresh token moves it to `token_expired`;
- `token_expired` accounts are never brought back by a probe: they need a new login;
- an admin's `unavailable` mark (`store/account_marks.py`) is never probed either: it ends at the
  time the admin chose, or when an admin lifts it.

The periodic sweep (runtime configs `health_check_enabled`, `health_check_interval`) probes the
enabled accounts the relay itself moved out of rotation (a status set by hand with
`PUT /api/admin/accounts/:id/status` lasts until an admin changes it) once they have rested at
least one interval since their mark and since their last check: a cooldown never outlives the
upstream's reset by more than about one interval. Across instances one sweep runs at a time
(a shared lock) and at most one per interval (the last run is kept in shared state), and the
results are kept in shared state too, so every instance shows the same ones.

Every status change a check causes is written to the account's `status_reason` (and, for a mark,
`last_error`); results and reasons are masked, so credentials echoed by an upstream never stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select, update

from ..background import BackgroundTask
from ..errors import AppError, BadRequest, NotFound
from ..security.masking import mask_text
from ..store.accounts import bump_pool_version
from ..store.error_rules import classify_error
from ..store.models import Account
from ..store.state import LockNotAcquired, StateUnavailable, warn_unavailable
from .probe import probe_account
from .providers import provider_for

if TYPE_CHECKING:
    from ..services import Services
    from .pool import AccountPool, PoolAccount
    from .tokens import TokenStore
    from .upstream import UpstreamClients

log = logging.getLogger(__name__)

# What a probe may bring back; an admin's `unavailable` is not among them: it lasts as long as they said.
OUT_OF_ROTATION = ("rate_limited", "overloaded", "invalid")
SWEEP_LOCK = "health:sweep:lock"
LAST_SWEEP = "health:sweep:last"
RESULT_PREFIX = "health:result:"
SWEEP_LOCK_TTL = 600.0  # beyond the longest sweep (probes time out after 60 s, PARALLEL at a time)
PARALLEL = 4  # probes under way at once in a sweep
MIN_RESULT_TTL = 86_400.0  # results are kept a day, or three intervals when that is longer
TICK = 5.0  # how often the scheduler looks at the clock (shorter when the interval is)
PROBE_MESSAGE = "Hello"
MESSAGE_MAX = 500
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^\s/@:]+:[^\s/@]+@", re.IGNORECASE)


class SweepRunning(AppError):
    status_code = 409
    default_message = "a health-check sweep is already running (on this or another instance)"


def result_key(account_id: int) -> str:
    return f"{RESULT_PREFIX}{account_id}"


def clean(text: str) -> str:
    """Free text as it may be stored or shown: credentials and proxy passwords masked, cut short."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", mask_text(text))[:MESSAGE_MAX]


def _iso(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value else 0.0


def marked_by_relay(row: Any) -> bool:
    """The status was set by traffic or a check (reason and last error written together by
    `AccountPool.mark`), not by an admin's `PUT .../status`, which leaves `last_error` alone."""
    return row.last_error_at is not None and row.status_reason == (row.last_error or "")[:500]


class HealthChecker:
    def __init__(
        self, services: Services, pool: AccountPool, tokens: TokenStore, clients: UpstreamClients
    ) -> None:
        self._services = services
        self._state = services.state
        self._configs = services.configs
        self._pool = pool
        self._tokens = tokens
        self._clients = clients
        self._loop = BackgroundTask("health-check", self._run_forever)
        self.sweeps = 0  # sweeps this instance ran (for tests and metrics)

    # -- settings --------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self._configs.get("health_check_enabled"))

    @property
    def interval(self) -> float:
        return float(self._configs.get("health_check_interval"))

    def _result_ttl(self) -> float:
        return max(MIN_RESULT_TTL, 3 * self.interval)

    # -- one account -----------------------------------------------------------------------------

    async def check(self, account_id: int, *, trigger: str = "manual") -> dict[str, Any]:
        """Probe one account now, record the result and apply it (NotFound / BadRequest when the
        account cannot be probed: unknown, disabled, unreadable credentials, no model to ask)."""
        row = await self._row(account_id)
        if row is None:
            raise NotFound("account not found")
        if not row.enabled:
            raise BadRequest(f"account {row.name} is disabled: enable it to check it")
        account = await self._snapshot(account_id)
        if account is None:
            raise BadRequest(f"account {row.name}: its credentials cannot be read with the configured key")
        return await self._check(row, account, trigger)

    async def _check(self, row: Any, account: PoolAccount, trigger: str) -> dict[str, Any]:
        before = row.status
        probe = await self._probe(account)
        action, after = "none", before
        if probe["success"]:
            if before in OUT_OF_ROTATION and await self._restore(account, before, probe):
                action, after = "recovered", "valid"
        else:
            action, after = await self._failed(account, before, probe)
        result = {
            "account_id": account.id,
            "name": account.name,
            "type": account.type,
            "checked_at": time.time(),
            "trigger": trigger,
            "success": bool(probe["success"]),
            "status_code": int(probe["status_code"]),
            "latency_ms": int(probe["latency_ms"]),
            "model": str(probe.get("model", "")),
            "message": clean(str(probe.get("message", ""))),
            "status_before": before,
            "status": after,
            "action": action,
        }
        await self._store_result(result)
        return shown(result)

    async def _probe(self, account: PoolAccount) -> dict[str, Any]:
        """The probe's answer; for an OAuth account refused with 401, refreshed and asked once more."""
        model = self._model(account)
        probe = await self._probe_once(account.id, model)
        if probe["status_code"] == 401 and account.oauth and account.credentials.get("refresh_token"):
            renewal = await self._tokens.after_rejection(self._tokens.current(account))
            if renewal.account is not None:
                probe = await self._probe_once(account.id, model)
            elif renewal.expired:
                probe["token_expired"] = True
        return probe

    async def _probe_once(self, account_id: int, model: str) -> dict[str, Any]:
        return await probe_account(
            self._pool,
            self._clients,
            self._tokens,
            account_id=account_id,
            model=model,
            message=PROBE_MESSAGE,
            configs=self._configs,
        )

    @staticmethod
    def _model(account: PoolAccount) -> str:
        """The provider's probe model, or one the account is known to serve when it does not."""
        model = provider_for(account, account.family).default_probe_model
        if account.upstream_model(model) is None:
            known = sorted(account.model_mapping) or sorted(account.allowed_models or ())
            if known:
                return known[0]
        return model

    async def _restore(self, account: PoolAccount, before: str, probe: dict[str, Any]) -> bool:
        """Back to `valid`, unless someone changed the status meanwhile; True when it was changed."""
        reason = (
            f"health check passed at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC "
            f"(HTTP {probe['status_code']}, {probe['latency_ms']} ms): back from {before}"
        )
        async with self._services.db.transaction() as session:
            changed = await session.execute(
                update(Account)
                .where(Account.id == account.id, Account.status == before, Account.enabled.is_(True))
                .values(status="valid", status_reason=reason, rate_limited_until=None, overloaded_until=None)
            )
        if not getattr(changed, "rowcount", 1):
            return False
        current = self._pool.accounts.get(account.id)
        if current is not None:
            self._pool.accounts[account.id] = replace(current, status="valid", cooldown_until=0.0)
        await bump_pool_version(self._state)
        log.info("account %s: health check passed, back from %s", account.id, before)
        return True

    async def _failed(self, account: PoolAccount, before: str, probe: dict[str, Any]) -> tuple[str, str]:
        """What a failed probe changes: only a failure the error rules put on the account itself."""
        if probe.get("token_expired"):
            return "token_expired", "token_expired"  # the token store marked it
        status = int(probe["status_code"])
        if status == 0 or before == "token_expired":
            return "none", before
        message = str(probe.get("message", ""))
        rule = classify_error(self._pool.error_rules, status, message)
        if rule is None or rule.target_status != "invalid" or before == "invalid":
            return "none", before
        reason = f"health check: HTTP {status}: {clean(message)}"
        await self._pool.mark(account.id, "invalid", until=None, reason=reason)
        log.warning("account %s: health check refused (HTTP %s), marked invalid", account.id, status)
        return "marked_invalid", "invalid"

    # -- the sweep -------------------------------------------------------------------------------

    async def sweep(self, *, trigger: str = "schedule") -> dict[str, Any]:
        """Probe the accounts out of rotation; a scheduled sweep only those due, a triggered one all.

        Raises SweepRunning when another sweep holds the lock; StateUnavailable passes through.
        """
        try:
            async with self._state.lock(SWEEP_LOCK, SWEEP_LOCK_TTL, wait=0):
                if trigger == "schedule" and not await self._due():
                    return {}  # another instance swept while this one waited for its turn
                return await self._sweep(trigger)
        except LockNotAcquired:
            raise SweepRunning() from None

    async def _sweep(self, trigger: str) -> dict[str, Any]:
        started = time.time()
        results: list[dict[str, Any]] = []
        record: dict[str, Any] = {"started_at": started, "trigger": trigger}
        try:
            await self._pool.fresh()
            gate = asyncio.Semaphore(PARALLEL)

            async def one(row: Any, account: PoolAccount) -> dict[str, Any]:
                async with gate:
                    try:
                        return await self._check(row, account, trigger)
                    except AppError as exc:  # the probe could not be made (no model, login expired)
                        return await self._unprobed(row, account, trigger, exc.message)

            candidates = await self._candidates(due_only=trigger == "schedule")
            results = list(await asyncio.gather(*(one(row, account) for row, account in candidates)))
        except Exception as exc:
            record["error"] = clean(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            # Written even after a failure, so that a broken sweep is retried after one interval,
            # not on every tick.
            record.update(
                finished_at=time.time(),
                instance=self._configs.instance_id,
                checked=len(results),
                recovered=sum(r["action"] == "recovered" for r in results),
                failed=sum(not r["success"] for r in results),
                account_ids=[r["account_id"] for r in results],
            )
            with contextlib.suppress(StateUnavailable):
                await self._state.set(LAST_SWEEP, _dump(record), ttl=self._result_ttl())
            self.sweeps += 1
        if results:
            log.info(
                "health-check sweep: %d checked, %d recovered, %d failed",
                record["checked"],
                record["recovered"],
                record["failed"],
            )
        return {**shown(record), "results": results}

    async def _rows(self, *conditions: Any) -> list[Any]:
        """The accounts' fields the checker decides and reports on, by id."""
        query = select(
            Account.id,
            Account.name,
            Account.type,
            Account.enabled,
            Account.status,
            Account.status_reason,
            Account.last_error,
            Account.last_error_at,
            Account.rate_limited_until,
            Account.overloaded_until,
        )
        async with self._services.db.session() as session:
            return list((await session.execute(query.where(*conditions).order_by(Account.id))).all())

    async def _candidates(self, *, due_only: bool) -> list[tuple[Any, PoolAccount]]:
        rows = await self._rows(Account.enabled.is_(True), Account.status.in_(OUT_OF_ROTATION))
        rows = [row for row in rows if marked_by_relay(row)]
        if due_only and rows:
            now = time.time()
            checks = await self._results([row.id for row in rows])
            interval = self.interval
            rows = [
                row
                for row in rows
                if now - max(_epoch(row.last_error_at), (checks.get(row.id) or {}).get("checked_at", 0.0))
                >= interval
            ]
        found = []
        for row in rows:
            account = self._pool.accounts.get(row.id)
            if account is not None:
                found.append((row, account))
        return found

    async def _unprobed(self, row: Any, account: PoolAccount, trigger: str, why: str) -> dict[str, Any]:
        result = {
            "account_id": account.id,
            "name": account.name,
            "type": account.type,
            "checked_at": time.time(),
            "trigger": trigger,
            "success": False,
            "status_code": 0,
            "latency_ms": 0,
            "model": "",
            "message": clean(f"not probed: {why}"),
            "status_before": row.status,
            "status": row.status,
            "action": "none",
        }
        await self._store_result(result)
        return shown(result)

    # -- scheduling ------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(min(TICK, self.interval))
            try:
                if self.enabled and await self._due():
                    await self.sweep()
            except SweepRunning:
                pass  # another instance is on it
            except StateUnavailable as exc:  # no lock, no coordination: wait for shared state
                warn_unavailable(log, "health-check sweep postponed until shared state is back", exc)
            except Exception:  # a database hiccup must not end the scheduler
                log.exception("health-check sweep failed")

    async def _due(self) -> bool:
        last = await self.last_sweep()
        return last is None or time.time() - float(last.get("started_at", 0.0)) >= self.interval

    # -- shared state ----------------------------------------------------------------------------

    async def last_sweep(self) -> dict[str, Any] | None:
        raw = await self._state.get(LAST_SWEEP)
        return _load(raw)

    async def _store_result(self, result: dict[str, Any]) -> None:
        try:
            await self._state.set(result_key(result["account_id"]), _dump(result), ttl=self._result_ttl())
        except StateUnavailable as exc:  # the check itself is done; only its record is lost
            warn_unavailable(log, "health-check result not kept: shared state unavailable", exc)

    async def _results(self, account_ids: list[int]) -> dict[int, dict[str, Any]]:
        raws = await asyncio.gather(*(self._state.get(result_key(i)) for i in account_ids))
        found = {}
        for account_id, raw in zip(account_ids, raws, strict=True):
            loaded = _load(raw)
            if loaded is not None:
                found[account_id] = loaded
        return found

    async def status(self) -> dict[str, Any]:
        """The checker's state and every account's last check, as any instance sees it."""
        rows = await self._rows()
        last = await self.last_sweep()
        checks = await self._results([row.id for row in rows])
        running = await self._state.get(SWEEP_LOCK) is not None  # the lock is a plain key while held
        started = float(last["started_at"]) if last else 0.0
        enabled = self.enabled
        return {
            "enabled": enabled,
            "interval": self.interval,
            "running": running,
            "last_run_at": _iso(started),
            "next_run_at": _iso(max(started + self.interval, time.time())) if enabled else None,
            "last_run": shown(last) if last else None,
            "accounts": [
                {
                    "id": row.id,
                    "name": row.name,
                    "type": row.type,
                    "enabled": row.enabled,
                    "status": row.status,
                    "status_reason": row.status_reason,
                    "cooldown_until": max(
                        (t for t in (row.rate_limited_until, row.overloaded_until) if t), default=None
                    ),
                    "sweep_candidate": row.enabled and row.status in OUT_OF_ROTATION and marked_by_relay(row),
                    "last_check": shown(checks[row.id]) if row.id in checks else None,
                }
                for row in rows
            ],
        }

    # -- reading ---------------------------------------------------------------------------------

    async def _row(self, account_id: int) -> Any:
        rows = await self._rows(Account.id == account_id)
        return rows[0] if rows else None

    async def _snapshot(self, account_id: int) -> PoolAccount | None:
        """The pool's view of an enabled account, reloading once when the pool has not seen it yet."""
        await self._pool.fresh()
        account = self._pool.accounts.get(account_id)
        if account is None:
            await self._pool.reload()
            account = self._pool.accounts.get(account_id)
        return account


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record as the API answers it: epoch seconds as datetimes."""
    out = dict(record)
    for name in ("checked_at", "started_at", "finished_at"):
        if name in out:
            out[name] = _iso(out[name])
    return out


def _dump(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _load(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
