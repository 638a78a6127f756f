"""Upstream error rules: the seeded defaults and the pure matcher the gateway runs on every error.

A rule maps an upstream error (HTTP status + a keyword found in the body) to the status the
account is moved to: `invalid`, `rate_limited`, `overloaded`, or `valid` (ignore the error, for
failures caused by the request rather than the account). The admin API edits the rules; the
gateway caches them as `ErrorRuleSpec` and reloads them when the pool version changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ErrorRule

TARGET_STATUSES = ("invalid", "rate_limited", "overloaded", "valid")
ANY_STATUS = 0


class RuleLike(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def keyword(self) -> str: ...
    @property
    def target_status(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def cooldown_seconds(self) -> int: ...
    @property
    def enabled(self) -> bool: ...


R = TypeVar("R", bound=RuleLike)


@dataclass(frozen=True, slots=True)
class ErrorRuleSpec:
    """An immutable copy of one rule, safe to share between requests."""

    status_code: int
    keyword: str
    target_status: str
    priority: int
    cooldown_seconds: int  # 0 = the cooldown configured for the target status
    enabled: bool = True
    id: int = 0
    name: str = ""


def rule_spec(row: ErrorRule) -> ErrorRuleSpec:
    return ErrorRuleSpec(
        status_code=row.status_code,
        keyword=row.keyword or "",
        target_status=row.target_status,
        priority=row.priority,
        cooldown_seconds=row.cooldown_seconds,
        enabled=row.enabled,
        id=row.id or 0,
        name=row.name or "",
    )


def _order_key(rule: RuleLike) -> tuple[int, bool, bool]:
    # Within one priority a rule for a specific status, then one with a keyword, is the more
    # specific statement and wins over a catch-all; Python's sort keeps input order after that.
    return (-rule.priority, rule.status_code == ANY_STATUS, not rule.keyword)


def ordered_rules(rules: Iterable[R]) -> list[R]:
    """Enabled rules in the order the matcher tries them (the gateway may cache this list)."""
    return sorted((r for r in rules if r.enabled), key=_order_key)


def classify_error(rules: Sequence[R], status: int, body_text: str) -> R | None:
    """The first enabled rule matching an upstream error, highest priority first; None if none.

    Status 0 in a rule matches any status; the keyword is a case-insensitive substring of the
    body and an empty keyword matches any body.
    """
    body = (body_text or "").lower()
    for rule in ordered_rules(rules):
        if rule.status_code not in (ANY_STATUS, status):
            continue
        if rule.keyword and rule.keyword.lower() not in body:
            continue
        return rule
    return None


def _rule(name: str, status: int, keyword: str, target: str, priority: int) -> ErrorRuleSpec:
    return ErrorRuleSpec(status, keyword, target, priority, cooldown_seconds=0, name=name)


_SUSPENDED = ("account has been suspended", "account is disabled", "account has been disabled", "banned")
_AUTH_WORDS = (
    "authentication_error",
    "invalid_api_key",
    "invalid api key",
    "token expired",
    "oauth token has expired",
    "please run /login",
    # Not in the contract's list: Gemini reports a bad or expired key as 400 with this reason.
    "api_key_invalid",
)

# (spec, description) pairs; descriptions are shown in the console next to each default rule.
DEFAULT_ERROR_RULES: tuple[tuple[ErrorRuleSpec, str], ...] = (
    # A 429 caused by the request (long context needs paid extra usage) must not freeze the account.
    (
        _rule("long-context-extra-usage", 429, "extra usage is required for long context", "valid", 130),
        "request needs extra usage: not the account's fault",
    ),
    *(
        (_rule(f"suspended: {word}", 403, word, "invalid", 120), "account suspended or banned")
        for word in _SUSPENDED
    ),
    (_rule("billing", 403, "billing", "invalid", 110), "billing problem on the upstream account"),
    (_rule("unauthorized", 401, "", "invalid", 100), "credentials rejected (OAuth: refreshed first)"),
    (_rule("too many requests", 429, "", "rate_limited", 100), "rate limited until the reset time"),
    (_rule("overloaded 529", 529, "", "overloaded", 100), "upstream overloaded"),
    (_rule("unavailable 503", 503, "", "overloaded", 100), "upstream temporarily unavailable"),
    *(
        (_rule(f"permission: {word}", 403, word, "rate_limited", 90), "temporary permission refusal")
        for word in ("permission_error", "permission denied")
    ),
    (_rule("forbidden", 403, "", "rate_limited", 80), "other 403: treated as temporary"),
    *(
        (_rule(f"body: {word}", ANY_STATUS, word, "rate_limited", 50), "rate limit named in the body")
        for word in ("rate limit", "rate_limit")
    ),
    *(
        (_rule(f"body: {word}", ANY_STATUS, word, "overloaded", 50), "overload named in the body")
        for word in ("overloaded", "overloaded_error", "api_error")
    ),
    *(
        (_rule(f"body: {word}", ANY_STATUS, word, "invalid", 50), "authentication failure in the body")
        for word in _AUTH_WORDS
    ),
)


def default_rule_rows() -> list[ErrorRule]:
    return [
        ErrorRule(
            name=spec.name,
            status_code=spec.status_code,
            keyword=spec.keyword,
            target_status=spec.target_status,
            priority=spec.priority,
            cooldown_seconds=spec.cooldown_seconds,
            enabled=True,
            is_default=True,
            description=description,
        )
        for spec, description in DEFAULT_ERROR_RULES
    ]


async def seed_error_rules(session: AsyncSession) -> int:
    """Insert the default rules unless some default rule exists; returns how many were added.

    Idempotent, and it leaves edited or deleted defaults alone as long as one default remains.
    The caller commits (or runs this inside a transaction).
    """
    existing = await session.scalar(
        select(func.count()).select_from(ErrorRule).where(ErrorRule.is_default.is_(True))
    )
    if existing:
        return 0
    rows = default_rule_rows()
    session.add_all(rows)
    await session.flush()
    return len(rows)
