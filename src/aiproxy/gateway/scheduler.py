"""Which account serves a request: candidates, weighted order, sticky sessions.

Candidates are the pool's accounts of the route's family (or the forced type) that the
caller's key may use, in the caller's account group, able to serve the model, and not
cooling down. They are ordered by a weighted random draw (priority × weight) without
replacement, so failover walks the same order the draw produced. A sticky binding, when
its account is still a candidate, goes first. Bindings live in shared state; while it cannot
be reached, requests are served without stickiness rather than refused.

A binding is one string key, `sticky:<key id>:<digest>` (the digest is a hash of the client's
session id, which is never stored), holding `<account id>:<bound at>`: the request reads it with
one GET, and the admin's list (`live_state.py`) shows since when it holds without another key.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass

import orjson

from ..store.state import SharedState, StateUnavailable, warn_unavailable
from .pool import AccountPool, PoolAccount

log = logging.getLogger(__name__)
_NOT_STICKY = "requests served without sticky sessions"

SESSION_HEADERS = (b"x-session-id", b"session_id", b"session-id", b"x-claude-code-session-id")


@dataclass(frozen=True, slots=True)
class Candidate:
    account: PoolAccount
    upstream_model: str


def candidates(
    pool: AccountPool,
    *,
    families: tuple[str, ...],
    forced_type: str | None,
    allowed_types: frozenset[str] | None,
    model: str,
    group_id: int | None,
    excluded_types: frozenset[str] = frozenset(),
) -> list[Candidate]:
    now = time.time()
    if group_id is None:
        group_id = pool.default_group_id
    found = []
    for account in pool.accounts.values():
        if account.family not in families:
            continue
        if forced_type is not None and account.type != forced_type:
            continue
        if account.type in excluded_types:
            continue
        if allowed_types is not None and account.type not in allowed_types:
            continue
        if group_id is not None and group_id not in account.groups:
            continue
        if not account.usable(now):
            continue
        upstream_model = account.upstream_model(model)
        if upstream_model is not None:
            found.append(Candidate(account, upstream_model))
    return found


def weighted_order(found: list[Candidate], rng: random.Random) -> list[Candidate]:
    """Efraimidis–Spirakis: sort by u^(1/w); heavier accounts tend to come first."""
    if len(found) <= 1:
        return found
    keyed = [(rng.random() ** (1.0 / (c.account.priority * c.account.weight)), c) for c in found]
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [c for _, c in keyed]


def _metadata_session(body: dict[str, object]) -> str | None:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return None
    user_id = metadata.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        return None
    if user_id.startswith("{"):
        try:
            parsed = orjson.loads(user_id)
        except orjson.JSONDecodeError:
            return None
        session = parsed.get("session_id") if isinstance(parsed, dict) else None
        return str(session) if session else None
    marker = user_id.rfind("_session_")  # older clients: user_<hash>_account_<uuid>_session_<uuid>
    return user_id[marker + 9 :] if marker >= 0 else None


def session_key(headers: dict[bytes, bytes], body: dict[str, object] | None) -> str | None:
    """A stable id for one conversation, or None when the request carries nothing to key on."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return "h:" + value.decode("latin-1")
    if not body:
        return None
    found = _metadata_session(body)
    if found:
        return "m:" + found
    for field in ("prompt_cache_key", "conversation_id"):
        value = body.get(field)
        if isinstance(value, str) and value:
            return "b:" + value
    for field in ("messages", "contents", "input"):
        value = body.get(field)
        if isinstance(value, list) and value:
            head = [
                body.get("system") or body.get("systemInstruction") or body.get("instructions"),
                value[:2],
            ]
            try:
                return "x:" + hashlib.sha256(orjson.dumps(head)).hexdigest()[:32]
            except orjson.JSONEncodeError:  # nested beyond what orjson serialises: no stickiness
                return None
    return None


STICKY_PREFIX = "sticky:"


def sticky_key(key_id: int, digest: str) -> str:
    """The shared-state key of one binding: scoped by API key, named by the session's digest."""
    return f"{STICKY_PREFIX}{key_id}:{digest}"


def session_digest(session: str) -> str:
    """What stands for a client's session id everywhere it is kept: state keys, the admin's list."""
    return hashlib.sha256(session.encode()).hexdigest()[:32]


def binding_value(account_id: int, bound_at: float) -> str:
    """`<account id>:<epoch seconds>`: the account, and since when (for the admin's list)."""
    return f"{account_id}:{int(bound_at)}"


def parse_binding(value: str) -> tuple[int, int | None]:
    """(account id, bound at); a binding written before the time was kept has no time.

    Raises ValueError for a value no version of the relay wrote."""
    account, _, bound_at = value.partition(":")
    return int(account), int(bound_at) if bound_at else None


class StickySessions:
    """The gateway's side of bindings: one GET per request, one SET or EXPIRE after it."""

    def __init__(self, state: SharedState) -> None:
        self._state = state

    @staticmethod
    def _key(key_id: int, session: str) -> str:
        return sticky_key(key_id, session_digest(session))

    async def get(self, key_id: int, session: str) -> int | None:
        try:
            value = await self._state.get(self._key(key_id, session))
        except StateUnavailable as exc:
            warn_unavailable(log, _NOT_STICKY, exc)
            return None
        if not value:
            return None
        try:
            return parse_binding(value)[0]
        except ValueError:  # not ours to read: served as if unbound, and bound again afterwards
            return None

    async def bind(self, key_id: int, session: str, account_id: int, ttl: float) -> None:
        try:
            await self._state.set(self._key(key_id, session), binding_value(account_id, time.time()), ttl=ttl)
        except StateUnavailable as exc:
            warn_unavailable(log, _NOT_STICKY, exc)

    async def touch(self, key_id: int, session: str, ttl: float) -> None:
        """Renew the binding's lifetime; its value (and so its bound-at time) stays."""
        try:
            await self._state.expire(self._key(key_id, session), ttl)
        except StateUnavailable as exc:
            warn_unavailable(log, _NOT_STICKY, exc)
