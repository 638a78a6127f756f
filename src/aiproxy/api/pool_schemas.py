"""Request bodies of the account-pool admin routes: accounts, groups, proxies, error rules."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ..store.accounts import ACCOUNT_TYPES, CREDENTIAL_FIELDS
from .numbers import Id
from .schemas import Body, _normalise_csv

AccountStatus = Literal["valid", "rate_limited", "overloaded", "unavailable", "invalid", "token_expired"]
# The same values as store.error_rules.TARGET_STATUSES; "valid" means "ignore the error".
TargetStatus = Literal["invalid", "rate_limited", "overloaded", "valid"]
ProxyType = Literal["http", "socks5"]
Rank = Annotated[int, Field(strict=True, ge=1, le=1000)]
AccountConcurrency = Annotated[int, Field(strict=True, ge=0, le=100000)]
Secret = Annotated[str, Field(max_length=20000)]  # OAuth tokens can be long
Short = Annotated[str, Field(max_length=128)]
Remark = Annotated[str, Field(max_length=255)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Platform = Annotated[str, Field(max_length=32, pattern=r"^[a-z0-9-]*$")]
Host = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._\-:\[\]]+$")]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
StatusCode = Annotated[int, Field(strict=True, ge=0, le=599)]
RulePriority = Annotated[int, Field(strict=True, ge=0, le=10000)]
Cooldown = Annotated[int, Field(strict=True, ge=0, le=30 * 86400)]


def _check_base_url(value: str | None) -> str | None:
    """An http(s) root URL without query or fragment, stored without a trailing slash."""
    if value is None:
        return None
    value = value.strip().rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    if parts.query or parts.fragment or " " in value:
        raise ValueError("must not contain a query, fragment or spaces")
    return value


def _check_type(value: str | None) -> str | None:
    if value is not None and value not in ACCOUNT_TYPES:
        raise ValueError(f"must be one of {', '.join(ACCOUNT_TYPES)}")
    return value


def _check_mapping(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    mapping = {k.strip(): v.strip() for k, v in value.items()}
    if any(not k or not v for k, v in mapping.items()):
        raise ValueError("model names must not be empty")
    return mapping


class AccountFields(Body):
    """Fields shared by create and update; on update every field is optional."""

    enabled: bool | None = None
    priority: Rank | None = None
    weight: Rank | None = None
    max_concurrency: AccountConcurrency | None = None
    api_key: Secret | None = None
    api_secret: Secret | None = None
    access_token: Secret | None = None
    refresh_token: Secret | None = None
    id_token: Secret | None = None
    session_key: Secret | None = None
    session_token: Secret | None = None
    region: Annotated[str, Field(max_length=64)] | None = None
    endpoint: Annotated[str, Field(max_length=512)] | None = None
    base_url: Annotated[str, Field(max_length=512)] | None = None
    api_version: Annotated[str, Field(max_length=32)] | None = None
    deployment: Short | None = None
    organization_id: Short | None = None
    model_mapping: dict[str, str] | None = None
    allowed_models: str | None = None
    proxy_config_id: Id | None = None
    remark: Remark | None = None
    group_ids: Annotated[list[Id], Field(max_length=1000)] | None = None

    _url = field_validator("endpoint", "base_url")(_check_base_url)
    _csv = field_validator("allowed_models")(_normalise_csv)
    _mapping = field_validator("model_mapping")(_check_mapping)

    def credentials(self) -> dict[str, str]:
        """The credential fields sent with a non-empty value (an empty one means "keep")."""
        return {name: value for name in CREDENTIAL_FIELDS if (value := getattr(self, name))}

    def columns(self) -> dict[str, object]:
        """The plain column changes that were sent; `endpoint` (the doc name) wins over `base_url`."""
        skip = {*CREDENTIAL_FIELDS, "endpoint", "group_ids", "clear_credentials"}
        changes = {k: v for k, v in self.model_dump(exclude_unset=True).items() if k not in skip}
        if self.endpoint is not None:
            changes["base_url"] = self.endpoint
        # Only proxy_config_id may be set back to null; other nulls mean "not sent".
        return {k: v for k, v in changes.items() if v is not None or k == "proxy_config_id"}


class AccountCreate(AccountFields):
    name: Name
    type: str
    enabled: bool | None = True
    priority: Rank | None = 50
    weight: Rank | None = 100
    max_concurrency: AccountConcurrency | None = 0  # 0 = unlimited

    _type = field_validator("type")(_check_type)


class AccountUpdate(AccountFields):
    name: Name | None = None
    type: str | None = None
    clear_credentials: list[str] = Field(default_factory=list, max_length=len(CREDENTIAL_FIELDS))

    _type = field_validator("type")(_check_type)

    @field_validator("clear_credentials")
    @classmethod
    def _known_credentials(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in CREDENTIAL_FIELDS]
        if unknown:
            raise ValueError(f"unknown credential field {unknown[0]}")
        return value


class AccountStatusBody(Body):
    status: AccountStatus
    reason: Annotated[str, Field(max_length=1000)] = ""


class GroupCreate(Body):
    name: Name
    description: Remark = ""
    platform: Platform = ""
    is_default: bool = False


class GroupUpdate(Body):
    name: Name | None = None
    description: Remark | None = None
    platform: Platform | None = None
    is_default: bool | None = None


class GroupMemberBody(Body):
    account_id: Id


class ProxyCreate(Body):
    name: Name
    type: ProxyType
    host: Host
    port: Port
    username: Remark = ""
    password: Remark = ""
    enabled: bool = True
    remark: Remark = ""


class ProxyUpdate(Body):
    name: Name | None = None
    type: ProxyType | None = None
    host: Host | None = None
    port: Port | None = None
    username: Remark | None = None
    password: Remark | None = None  # empty = keep the stored password
    clear_password: bool = False
    enabled: bool | None = None
    remark: Remark | None = None


class ProxyTestBody(Body):
    """Either a stored proxy (`id`) or the connection fields of an unsaved one."""

    id: Id | None = None
    type: ProxyType = "http"
    host: Host | None = None
    port: Port | None = None
    username: Remark = ""
    password: Remark = ""
    target: Annotated[str, Field(max_length=300, pattern=r"^[A-Za-z0-9._\-:\[\]]+:\d{1,5}$")] | None = None
    timeout: Annotated[float, Field(strict=True, gt=0, le=60, allow_inf_nan=False)] = 10.0


class ErrorRuleCreate(Body):
    name: Annotated[str, Field(max_length=100)] = ""
    status_code: StatusCode = 0
    keyword: Remark = ""
    target_status: TargetStatus
    priority: RulePriority = 0
    cooldown_seconds: Cooldown = 0
    enabled: bool = True
    description: Remark = ""


class ErrorRuleUpdate(Body):
    name: Annotated[str, Field(max_length=100)] | None = None
    status_code: StatusCode | None = None
    keyword: Remark | None = None
    target_status: TargetStatus | None = None
    priority: RulePriority | None = None
    cooldown_seconds: Cooldown | None = None
    enabled: bool | None = None
    description: Remark | None = None


class ErrorMessageCreate(Body):
    status_code: StatusCode
    keyword: Remark = ""
    message: Annotated[str, Field(min_length=1, max_length=2000)]
    enabled: bool = True
    description: Remark = ""


class ErrorMessageUpdate(Body):
    status_code: StatusCode | None = None
    keyword: Remark | None = None
    message: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    enabled: bool | None = None
    description: Remark | None = None
