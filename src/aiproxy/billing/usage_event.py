"""A finished request as the usage recorder receives it, and its journal form.

The gateway builds one `UsageEvent` per request that reached it; the recorder journals it and
writes it as rows (usage_rows.py). `log_values` / `usage_values` give the rows as plain tuples in
column order, for the database driver's bulk insert: no per-row work in the ORM.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .pricing import Cost, Usage


@dataclass(slots=True)
class UsageEvent:
    request_id: str
    user_id: int | None  # None: refused before the key was known
    api_key_id: int | None
    account_id: int | None
    platform: str
    model: str
    upstream_model: str
    path: str
    stream: bool
    status: str
    status_code: int
    usage: Usage | None
    cost: Cost | None
    duration_ms: int
    first_byte_ms: int
    created_at: datetime
    method: str = "POST"
    retries: int = 0
    client_ip: str = ""
    user_agent: str = ""
    session_hash: str = ""
    flags: list[str] = field(default_factory=list)
    error_message: str = ""
    request_headers: str = ""
    request_body: str = ""
    user_package_id: int | None = None  # the user package that paid for it
    client_type: str = ""  # the client type the client filter identified ("" when not checked)

    def log_values(self, stamp: Any) -> tuple[Any, ...]:
        """The request_logs row, in `LOG_COLUMNS` order; `stamp` is `created_at` as the driver
        takes it (see usage_rows.py)."""
        usage = self.usage or _NO_USAGE
        return (
            self.request_id,
            self.user_id,
            self.api_key_id,
            self.account_id,
            self.platform,
            column_text(self.model, 128),
            column_text(self.upstream_model, 128),
            self.method,
            column_text(self.path, 255),
            self.stream,
            self.status,
            self.status_code,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_creation_tokens,
            usage.cache_read_tokens,
            usage.total,
            self.cost.total if self.cost else 0.0,
            self.duration_ms,
            self.first_byte_ms,
            self.retries,
            self.client_ip[:64],
            column_text(self.user_agent, 512),
            self.client_type[:64],
            self.session_hash,
            ",".join(self.flags),
            column_text(self.error_message, 4000),
            column_text(self.request_headers, 1 << 20),
            column_text(self.request_body, 1 << 24),
            "",  # response_body: not captured
            stamp,
        )

    def usage_values(self, stamp: Any) -> tuple[Any, ...] | None:
        """The usage_records row in `USAGE_COLUMNS` order, or None when nothing was billed."""
        usage, cost = self.usage, self.cost
        if usage is None or cost is None:
            return None
        return (
            self.request_id,
            self.user_id,
            self.api_key_id,
            self.account_id,
            self.user_package_id,
            self.platform,
            column_text(self.model, 128),
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_creation_tokens,
            usage.cache_read_tokens,
            usage.total,
            cost.input,
            cost.output,
            cost.cache_creation,
            cost.cache_read,
            cost.rate,
            cost.total,
            stamp,
        )


# Column order of the tuples above (tests check they name every column of their table).
LOG_COLUMNS = (
    "request_id",
    "user_id",
    "api_key_id",
    "account_id",
    "platform",
    "model",
    "upstream_model",
    "method",
    "path",
    "stream",
    "status",
    "status_code",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "total_tokens",
    "cost",
    "duration_ms",
    "first_byte_ms",
    "retries",
    "client_ip",
    "user_agent",
    "client_type",
    "session_hash",
    "flags",
    "error_message",
    "request_headers",
    "request_body",
    "response_body",
    "created_at",
)
USAGE_COLUMNS = (
    "request_id",
    "user_id",
    "api_key_id",
    "account_id",
    "user_package_id",
    "platform",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "total_tokens",
    "input_cost",
    "output_cost",
    "cache_creation_cost",
    "cache_read_cost",
    "price_rate",
    "cost",
    "created_at",
)
_NO_USAGE = Usage()


def column_text(value: str, limit: int) -> str:
    """A client-supplied string as a column takes it: cut to the column, without NUL characters
    (PostgreSQL refuses them in text, and one refused row would hold back every row after it)."""
    value = value[:limit]
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


_TEXT_FIELDS = ("model", "upstream_model", "path", "client_ip", "user_agent", "error_message", "session_hash")
_COUNT_FIELDS = ("status_code", "duration_ms", "first_byte_ms", "retries")
_BIG = 2**31 - 1


def ascii_only(value: str, limit: int) -> str:
    return value[:limit].encode("ascii", "replace").decode("ascii")


def _clamp(value: int) -> int:
    return max(0, min(int(value), _BIG))


def defanged(event: UsageEvent) -> UsageEvent:
    """The event with nothing a database could refuse: ASCII text, counts in range, finite costs."""
    changes: dict[str, Any] = {name: ascii_only(getattr(event, name), 4000) for name in _TEXT_FIELDS}
    changes.update({name: _clamp(getattr(event, name)) for name in _COUNT_FIELDS})
    changes.update(
        flags=[ascii_only(flag, 32) for flag in event.flags], request_headers="{}", request_body=""
    )
    if event.usage is not None:
        changes["usage"] = Usage(*(_clamp(value) for value in dataclasses.astuple(event.usage)))
    if event.cost is not None:
        changes["cost"] = Cost(
            *(value if math.isfinite(value) else 0.0 for value in dataclasses.astuple(event.cost))
        )
    return dataclasses.replace(event, **changes)


def _build(cls: Any, data: dict[str, Any]) -> Any:
    # Unknown keys are dropped: a journal written by another version must still replay.
    fields = cls.__dataclass_fields__
    return cls(**{name: value for name, value in data.items() if name in fields})


def event_from_journal(data: dict[str, Any]) -> UsageEvent:
    """The inverse of `orjson.dumps(event)`: nested dataclasses and the datetime restored.

    orjson writes floats in their shortest round-tripping form, so costs come back bit for bit.
    """
    data = dict(data)
    if data.get("usage") is not None:
        data["usage"] = _build(Usage, data["usage"])
    if data.get("cost") is not None:
        data["cost"] = _build(Cost, data["cost"])
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return _build(UsageEvent, data)
