"""Bodies and views of the client filter routes. Every pattern is compiled here: a bad regular
expression is a 400 naming the field when it is saved, never an error at request time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..gateway.client_filter import RULE_TYPES, PatternError, compile_pattern
from .numbers import Id
from .schemas import Body

ClientName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
DisplayName = Annotated[str, Field(min_length=1, max_length=100)]
Description = Annotated[str, Field(max_length=255)]
Pattern = Annotated[str, Field(max_length=512)]
FieldName = Annotated[str, Field(max_length=128)]
RuleType = Literal["header", "body", "system"]
FilterMode = Literal["simple", "strict"]
assert set(RULE_TYPES) == {"header", "body", "system"}


def _compiles(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        compile_pattern(value, what)
    except PatternError as exc:
        raise ValueError(str(exc)) from None
    return value


class FilterConfigUpdate(Body):
    filter_enabled: bool | None = None
    filter_mode: FilterMode | None = None
    allowed_clients: list[ClientName] | None = Field(default=None, max_length=100)
    default_allow: bool | None = None

    @field_validator("allowed_clients")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value is not None else None


class ClientTypeFields(Body):
    name: ClientName | None = None
    display_name: DisplayName | None = None
    description: Description | None = None
    ua_pattern: Pattern | None = None
    path_pattern: Pattern | None = None  # "" = any path
    enabled: bool | None = None

    @field_validator("ua_pattern")
    @classmethod
    def _ua(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        return _compiles(value, "ua_pattern")

    @field_validator("path_pattern")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return _compiles(value, "path_pattern")


class ClientTypeCreate(ClientTypeFields):
    name: ClientName
    display_name: DisplayName
    ua_pattern: Pattern


class ClientTypeUpdate(ClientTypeFields):
    pass


class RuleFields(Body):
    client_type_id: Id | None = None
    rule_type: RuleType | None = None
    field_name: FieldName | None = None
    pattern: Pattern | None = None
    required: bool | None = None
    enabled: bool | None = None
    description: Description | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return _compiles(value, "pattern")


class RuleCreate(RuleFields):
    client_type_id: Id
    rule_type: RuleType
    field_name: FieldName = ""
    pattern: Pattern

    @model_validator(mode="after")
    def _field_needed(self) -> RuleCreate:
        if self.rule_type != "system" and not self.field_name:
            raise ValueError("field_name: required for header and body rules")
        return self


class RuleUpdate(RuleFields):
    pass


class FilterTest(Body):
    """A sample request: its User-Agent, other headers, body and (optionally) path and mode."""

    user_agent: str = Field(default="", max_length=2048)
    headers: dict[str, str] = Field(default_factory=dict, max_length=200)
    body: dict[str, Any] | None = None
    path: str | None = Field(default=None, max_length=1024)  # None: path patterns are not checked
    mode: FilterMode | None = None  # None: the configured mode


# --- views -----------------------------------------------------------------------------------


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class FilterConfigView(View):
    filter_enabled: bool
    filter_mode: str
    allowed_clients: list[str]
    default_allow: bool
    updated_at: datetime | None = None


class ClientTypeView(View):
    id: int
    name: str
    display_name: str
    description: str
    ua_pattern: str
    path_pattern: str
    enabled: bool
    is_builtin: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RuleView(View):
    id: int
    client_type_id: int
    rule_type: str
    field_name: str
    pattern: str
    required: bool
    enabled: bool
    description: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
