"""Request bodies. Unknown fields are ignored; wrong types give a 400 naming the field."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .numbers import INT64_MAX, Amount, Count32, Id, Int32

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LIST_ITEM_RE = re.compile(r"^[A-Za-z0-9._:/@,\- ]*$")

Username = Annotated[str, Field(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.@-]+$")]
Password = Annotated[str, Field(min_length=6, max_length=128)]
Role = Literal["admin", "user"]
UserStatus = Literal["active", "disabled"]
Email = Annotated[str, Field(max_length=255)]  # the column's length
ShortList = Annotated[str, Field(max_length=255)]  # comma-separated lists stored in VARCHAR(255)
PriceRate = Annotated[float, Field(strict=True, ge=0, le=1000, allow_inf_nan=False)]
Concurrency = Annotated[int, Field(strict=True, ge=0, le=100000)]


def _check_email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if value and not _EMAIL_RE.match(value):
        raise ValueError("not a valid email address")
    return value


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class LoginBody(Body):
    username: str = Field(min_length=1, max_length=50)
    password: str = Field(min_length=1, max_length=128)
    captcha_id: str = ""
    captcha: str = ""


class RegisterBody(Body):
    username: Username
    password: Password
    email: Email | None = None
    captcha_id: str = ""
    captcha: str = ""

    _email = field_validator("email")(_check_email)


class ProfileUpdate(Body):
    email: Email | None = None

    _email = field_validator("email")(_check_email)


class PasswordChange(Body):
    old_password: str = Field(min_length=1, max_length=128)
    new_password: Password


def _normalise_csv(value: str | None) -> str | None:
    if value is None:
        return None
    if not _LIST_ITEM_RE.match(value):
        raise ValueError("must be a comma-separated list")
    items = [item.strip() for item in value.split(",") if item.strip()]
    return ",".join(dict.fromkeys(items))


RateLimit = Annotated[int, Field(strict=True, ge=0, le=1_000_000)]  # requests per minute
DailyLimit = Annotated[int, Field(strict=True, ge=0, le=1_000_000_000)]  # requests per day
# 0 unbinds; any other id must be a user package of the key's owner (checked by the store).
KeyPackageId = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]


class ApiKeyFields(Body):
    allowed_platforms: ShortList | None = None
    allowed_models: str | None = None
    allowed_clients: ShortList | None = None
    rate_limit: RateLimit | None = None
    daily_limit: DailyLimit | None = None
    monthly_quota: Amount | None = None
    expires_at: datetime | None = None
    user_package_id: KeyPackageId | None = None

    _csv = field_validator("allowed_platforms", "allowed_models", "allowed_clients")(_normalise_csv)

    @field_validator("expires_at")
    @classmethod
    def _future_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # a bare timestamp is read as UTC
            value = value.replace(tzinfo=UTC)
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is in year 10000 in UTC
            raise ValueError("is beyond the last representable date") from None


class ApiKeyCreate(ApiKeyFields):
    name: str = Field(min_length=1, max_length=100)


class ApiKeyUpdate(ApiKeyFields):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    status: Literal["active", "disabled"] | None = None


class AdminApiKeyCreate(ApiKeyCreate):
    price_rate: PriceRate | None = None
    account_group_id: Id | None = None


class AdminApiKeyUpdate(ApiKeyUpdate):
    price_rate: PriceRate | None = None
    account_group_id: Id | None = None


class ApiKeyLookup(Body):
    key: str = Field(min_length=1, max_length=200)


class UserCreate(Body):
    username: Username
    password: Password
    email: Email | None = None
    role: Role = "user"
    status: UserStatus = "active"
    price_rate: PriceRate = 1.0
    max_concurrency: Concurrency | None = None
    balance: Amount = 0.0
    account_group_id: Id | None = None

    _email = field_validator("email")(_check_email)


class UserUpdate(Body):
    email: Email | None = None
    role: Role | None = None
    status: UserStatus | None = None
    price_rate: PriceRate | None = None
    max_concurrency: Concurrency | None = None
    balance: Amount | None = None
    password: Password | None = None
    account_group_id: Id | None = None

    _email = field_validator("email")(_check_email)


class BatchPriceRate(Body):
    user_ids: list[Id] = Field(min_length=1, max_length=10000)
    price_rate: PriceRate


class AllPriceRate(Body):
    price_rate: PriceRate


Price = Annotated[float, Field(strict=True, ge=0, le=100000, allow_inf_nan=False)]


class ModelCreate(Body):
    model_id: str = Field(min_length=1, max_length=128)
    model_name: str = Field(min_length=1, max_length=128)
    platform: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")
    input_price: Price
    output_price: Price
    cache_creation_price: Price = 0.0
    cache_read_price: Price = 0.0
    cache_creation_1h_price: Price = 0.0
    mode: Literal["chat", "responses", "embedding", "image"] = "chat"
    max_input_tokens: Count32 = 0
    max_output_tokens: Count32 = 0
    aliases: str = ""
    enabled: bool = True
    sort_order: Int32 = 0


class ModelUpdate(Body):
    model_id: str | None = Field(default=None, min_length=1, max_length=128)
    model_name: str | None = Field(default=None, min_length=1, max_length=128)
    platform: str | None = Field(default=None, min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")
    input_price: Price | None = None
    output_price: Price | None = None
    cache_creation_price: Price | None = None
    cache_read_price: Price | None = None
    cache_creation_1h_price: Price | None = None
    mode: Literal["chat", "responses", "embedding", "image"] | None = None
    max_input_tokens: Count32 | None = None
    max_output_tokens: Count32 | None = None
    aliases: str | None = None
    enabled: bool | None = None
    sort_order: Int32 | None = None


class ConfigUpdate(Body):
    category: str | None = None
    key: str = Field(min_length=1, max_length=64)
    # Any JSON scalar: the config's declared type decides (and explains) what is accepted.
    value: bool | int | float | str | None = Field(...)

    @field_validator("value")
    @classmethod
    def _representable(cls, value: bool | float | str | None) -> bool | float | str | None:
        """Numbers finite and within 64 bits, so that the answer echoing the value can be encoded."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and (not math.isfinite(value) or abs(value) > INT64_MAX):  # type: ignore[arg-type]
            raise ValueError("must be a finite number within 64 bits")
        return value
