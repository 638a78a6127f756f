"""Request bodies of the package routes: packages for sale, and the packages users hold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ..store.accounts import ACCOUNT_TYPES
from .numbers import INT64_MAX, Amount, Id, Int32
from .schemas import Body, DailyLimit, RateLimit, ShortList, _normalise_csv

PackageName = Annotated[str, Field(min_length=1, max_length=100)]
Description = Annotated[str, Field(max_length=2000)]
ModelList = Annotated[str, Field(max_length=10000)]
TokenQuota = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]  # 0 = no token cap
ValidDays = Annotated[int, Field(strict=True, ge=1, le=3650)]
PackageStatus = Literal["active", "disabled"]
UserPackageStatus = Literal["active", "disabled", "expired", "exhausted"]
AssignMode = Literal["new", "extend", "reset"]


def _check_platforms(value: str | None) -> str | None:
    """Account types, comma-separated; "" (or "all") = every platform."""
    value = _normalise_csv(value)
    if not value:
        return value
    items = value.split(",")
    if "all" in items:
        return ""
    if any(item not in ACCOUNT_TYPES for item in items):
        raise ValueError(f"must be account types, comma-separated: {', '.join(ACCOUNT_TYPES)}")
    return value


def _as_utc(value: datetime | None) -> datetime | None:
    """A time with an offset, in UTC; a bare timestamp is read as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is in year 10000 in UTC
        raise ValueError("is beyond the last representable date") from None


class PackageFields(Body):
    """Fields shared by create and update; None (or absent) leaves a field as it is."""

    name: PackageName | None = None
    description: Description | None = None
    price: Amount | None = None
    token_quota: TokenQuota | None = None
    cost_quota: Amount | None = None  # dollars; 0 = no dollar cap
    valid_days: ValidDays | None = None
    allowed_platforms: ShortList | None = None
    allowed_models: ModelList | None = None
    allowed_clients: ShortList | None = None
    rate_limit: RateLimit | None = None
    daily_limit: DailyLimit | None = None
    status: PackageStatus | None = None
    sort_order: Int32 | None = None

    _platforms = field_validator("allowed_platforms")(_check_platforms)
    _csv = field_validator("allowed_models", "allowed_clients")(_normalise_csv)


class PackageCreate(PackageFields):
    name: PackageName
    price: Amount
    token_quota: TokenQuota
    valid_days: ValidDays


class PackageUpdate(PackageFields):
    pass


class UserPackageAssign(Body):
    package_id: Id
    mode: AssignMode = "new"
    token_quota: TokenQuota | None = None
    cost_quota: Amount | None = None
    valid_days: ValidDays | None = None
    start_time: datetime | None = None

    _utc = field_validator("start_time")(_as_utc)


class UserPackageUpdate(Body):
    token_quota: TokenQuota | None = None
    cost_quota: Amount | None = None
    end_time: datetime | None = None
    status: UserPackageStatus | None = None

    _utc = field_validator("end_time")(_as_utc)
